-- A prompt run's start, kept for what comes after its workflow is edited: the credits its start
-- held (a reset holds them again: Temporal replays the run's own input, its prompt and output cap,
-- not the edited definition), and its webSearch flag (an Idempotency-Key replay answers as the
-- first request was answered). NULL for code runs and for runs started before this migration.
ALTER TABLE `runs` ADD `prompt_hold` integer;--> statement-breakpoint
ALTER TABLE `runs` ADD `prompt_web_search` integer;
