-- A rotated webhook secret keeps signing beside the new one for a while (previous_secret, sealed as
-- it was stored, until previous_secret_expires_at): receivers switch secrets without refusing a message.
ALTER TABLE `webhook_endpoints` ADD `previous_secret` text;--> statement-breakpoint
ALTER TABLE `webhook_endpoints` ADD `previous_secret_expires_at` text;