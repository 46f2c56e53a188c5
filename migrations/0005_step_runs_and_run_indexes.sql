CREATE TABLE `step_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`run_id` text NOT NULL,
	`organization_id` text NOT NULL,
	`step_id` text NOT NULL,
	`step_name` text,
	`attempt` integer NOT NULL,
	`status` text NOT NULL,
	`outputs` text,
	`error` text,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')) NOT NULL,
	`updated_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')) NOT NULL,
	FOREIGN KEY (`run_id`) REFERENCES `runs`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `step_runs_run_step_attempt_uq` ON `step_runs` (`run_id`,`step_id`,`attempt`);--> statement-breakpoint
DROP INDEX `runs_org_status_idx`;--> statement-breakpoint
ALTER TABLE `runs` ADD `env_names` text;--> statement-breakpoint
CREATE INDEX `runs_org_status_created_idx` ON `runs` (`organization_id`,`status`,`created_at`);--> statement-breakpoint
CREATE INDEX `runs_org_workflow_created_idx` ON `runs` (`organization_id`,`workflow_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `runs_org_workflow_status_idx` ON `runs` (`organization_id`,`workflow_id`,`status`);