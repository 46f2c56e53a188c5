DROP INDEX `runs_org_workflow_status_idx`;--> statement-breakpoint
ALTER TABLE `runs` ADD `waiting_since` text;--> statement-breakpoint
CREATE INDEX `runs_org_workflow_status_idx` ON `runs` (`organization_id`,`workflow_id`,`status`,`waiting_since`);