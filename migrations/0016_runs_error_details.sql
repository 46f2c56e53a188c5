-- Output's structured failure (errorDetails) of a run that did not complete, for results
-- (src/shared/error-details.ts); NULL for runs that ended before it was recorded.
ALTER TABLE `runs` ADD `error_details` text;
