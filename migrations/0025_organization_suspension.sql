-- An operator can suspend an organization (POST /admin/v1/organizations/:orgId/suspend): while
-- suspended_at is set, every tenant request of the organization is 403 organization_suspended.
-- suspension_reason is the operator's note, shown by the admin API only.
ALTER TABLE `organizations` ADD `suspended_at` text;--> statement-breakpoint
ALTER TABLE `organizations` ADD `suspension_reason` text;