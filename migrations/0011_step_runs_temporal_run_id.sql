-- Step rows are keyed by the Temporal run too: a reset or a continue-as-new gives the run row a new
-- Temporal run whose activity ids and attempts start again from the same numbers, and with the old
-- key the new run's attempts overwrote the earlier run's (docs/workflow-runs.md, "Activity runs").
-- Existing rows are kept and attributed to the Temporal run their run row names now (the only one
-- known here), an empty string when the row has none. The new unique index is created before the
-- old one is dropped; it cannot fail, since rows unique on (run, step, attempt) are unique on
-- (run, temporal run, step, attempt). D1 applies the file in one transaction.
ALTER TABLE `step_runs` ADD `temporal_run_id` text DEFAULT '' NOT NULL;--> statement-breakpoint
UPDATE `step_runs` SET `temporal_run_id` = COALESCE((SELECT r.`temporal_run_id` FROM `runs` r WHERE r.`id` = `step_runs`.`run_id`), '');--> statement-breakpoint
CREATE UNIQUE INDEX `step_runs_run_temporal_run_step_attempt_uq` ON `step_runs` (`run_id`,`temporal_run_id`,`step_id`,`attempt`);--> statement-breakpoint
DROP INDEX `step_runs_run_step_attempt_uq`;
