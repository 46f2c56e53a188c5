-- Each organization's runs that have not ended (`scheduled`, `running`), kept in step with the run
-- rows by triggers inside the statement that changes them, as the credit triggers keep
-- credits_reserved (0009): a start reads one column to check MAX_OPEN_RUNS_PER_ORGANIZATION
-- instead of counting the open runs. No CASE in trigger bodies (see 0009): a comparison is 1 or 0.
ALTER TABLE `organizations` ADD `open_runs` integer DEFAULT 0 NOT NULL;
--> statement-breakpoint
UPDATE organizations SET open_runs = (
  SELECT COUNT(*) FROM runs WHERE runs.organization_id = organizations.id AND runs.status IN ('scheduled', 'running')
);
--> statement-breakpoint
CREATE TRIGGER `runs_open_on_insert` AFTER INSERT ON `runs`
WHEN NEW.status IN ('scheduled', 'running')
BEGIN
  UPDATE organizations SET open_runs = open_runs + 1 WHERE id = NEW.organization_id;
END;
--> statement-breakpoint
-- A run that ends, or opens again (a reset): only a change between open and not open counts.
CREATE TRIGGER `runs_open_on_status` AFTER UPDATE OF `status` ON `runs`
WHEN (OLD.status IN ('scheduled', 'running')) <> (NEW.status IN ('scheduled', 'running'))
BEGIN
  UPDATE organizations SET open_runs = MAX(0, open_runs + (NEW.status IN ('scheduled', 'running')) - (OLD.status IN ('scheduled', 'running')))
  WHERE id = NEW.organization_id;
END;
--> statement-breakpoint
CREATE TRIGGER `runs_open_on_delete` AFTER DELETE ON `runs`
WHEN OLD.status IN ('scheduled', 'running')
BEGIN
  UPDATE organizations SET open_runs = MAX(0, open_runs - 1) WHERE id = OLD.organization_id;
END;
