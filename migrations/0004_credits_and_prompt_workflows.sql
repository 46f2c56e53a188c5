CREATE TABLE `credit_ledger` (
	`id` text PRIMARY KEY NOT NULL,
	`organization_id` text NOT NULL,
	`kind` text NOT NULL,
	`amount` integer NOT NULL,
	`balance_after` integer NOT NULL,
	`run_id` text,
	`note` text DEFAULT '' NOT NULL,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')) NOT NULL,
	FOREIGN KEY (`organization_id`) REFERENCES `organizations`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `credit_ledger_org_created_idx` ON `credit_ledger` (`organization_id`,`created_at`);--> statement-breakpoint
CREATE UNIQUE INDEX `credit_ledger_run_charge_uq` ON `credit_ledger` (`run_id`) WHERE kind = 'charge';--> statement-breakpoint
ALTER TABLE `organizations` ADD `credit_balance` integer;--> statement-breakpoint
ALTER TABLE `organizations` ADD `credits_reserved` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `runs` ADD `credit_hold` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `runs` ADD `credits_charged` integer;--> statement-breakpoint
ALTER TABLE `workflows` ADD `prompt` text;