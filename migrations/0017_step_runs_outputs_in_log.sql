-- A step attempt's outputs too large for its D1 row (a row holds at most 2 MB) stay in the run's
-- log only; the Workflow Runs API's detail reads them from the run's RunStream.
ALTER TABLE `step_runs` ADD `outputs_in_log` integer DEFAULT false NOT NULL;
