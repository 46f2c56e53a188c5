-- The names a workflow had before a rename. A run shows its workflow's name when it ran
-- (runs.workflow_name), and the Workflow Runs API's `search` matches a run by that name as well as
-- by its workflow's current one; keeping former names per workflow lets the search stay a lookup of
-- workflow ids (the runs' (organization, workflow, created) index) instead of a scan of every run.
CREATE TABLE `workflow_former_names` (
	`workflow_id` text NOT NULL,
	`name` text NOT NULL,
	PRIMARY KEY(`workflow_id`, `name`),
	FOREIGN KEY (`workflow_id`) REFERENCES `workflows`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE TRIGGER `workflows_keep_former_name` AFTER UPDATE OF `name` ON `workflows`
WHEN OLD.name <> NEW.name
BEGIN
  INSERT OR IGNORE INTO workflow_former_names (workflow_id, name) VALUES (OLD.id, OLD.name);
END;
--> statement-breakpoint
-- Workflows renamed before this migration: the names their runs show that are not their name now.
INSERT OR IGNORE INTO `workflow_former_names` (`workflow_id`, `name`)
SELECT DISTINCT `runs`.`workflow_id`, `runs`.`workflow_name` FROM `runs`
JOIN `workflows` ON `workflows`.`id` = `runs`.`workflow_id`
WHERE `runs`.`workflow_name` <> `workflows`.`name`;
