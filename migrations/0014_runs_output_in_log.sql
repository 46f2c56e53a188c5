-- A run's output too large for its D1 row (a row holds at most 2 MB, input included) stays in the
-- run's log only; readers then ask its RunStream (docs/architecture.md).
ALTER TABLE `runs` ADD `output_in_log` integer DEFAULT false NOT NULL;
