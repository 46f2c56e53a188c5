-- GET /workflow/runs?workflowType= filters on the run's own workflow name (as Output filters on
-- the run's WorkflowType, and as the unfiltered list shows it), newest first, from this index.
CREATE INDEX `runs_org_workflow_name_created_idx` ON `runs` (`organization_id`,`workflow_name`,`created_at`);