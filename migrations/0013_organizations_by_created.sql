-- GET /admin/v1/organizations pages through organizations newest first, from this index.
CREATE INDEX `organizations_created_idx` ON `organizations` (`created_at`,`id`);