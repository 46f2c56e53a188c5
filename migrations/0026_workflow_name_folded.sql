-- Workflow names folded for the Workflow Runs API's case-insensitive `search`. SQLite's lower()
-- folds ASCII only (D1 has no ICU and no user functions), so "Ärzte" was not found by "ärzte":
-- the Worker folds each name in JS (foldForSearch, src/shared/names.ts) and writes it beside the
-- name; the search compares folded with folded.
--
-- NULL is "not folded yet": the search falls back to lower(name) for such a row (ASCII letters
-- only, as before), and every catalog publish (the host's registration) folds them
-- (foldUnfoldedNames, src/db/workflows.ts). Rows with an all-ASCII name are folded here: for them
-- lower() is the fold. The others (a name with any non-ASCII character, byte length > length)
-- stay NULL until then, as do rows an older Worker writes while this migration is applied before
-- its code; the partial indexes find them without a scan.
ALTER TABLE `workflow_former_names` ADD `name_folded` text;--> statement-breakpoint
CREATE INDEX `workflow_former_names_unfolded_idx` ON `workflow_former_names` (`workflow_id`) WHERE name_folded IS NULL;--> statement-breakpoint
ALTER TABLE `workflows` ADD `name_folded` text;--> statement-breakpoint
CREATE INDEX `workflows_unfolded_idx` ON `workflows` (`id`) WHERE name_folded IS NULL;--> statement-breakpoint
UPDATE `workflows` SET `name_folded` = lower(`name`) WHERE length(CAST(`name` AS BLOB)) = length(`name`);--> statement-breakpoint
UPDATE `workflow_former_names` SET `name_folded` = lower(`name`) WHERE length(CAST(`name` AS BLOB)) = length(`name`);--> statement-breakpoint
-- A former name keeps the fold its workflow had (0023's trigger, now with the folded name).
DROP TRIGGER `workflows_keep_former_name`;--> statement-breakpoint
CREATE TRIGGER `workflows_keep_former_name` AFTER UPDATE OF `name` ON `workflows`
WHEN OLD.name <> NEW.name
BEGIN
  INSERT OR IGNORE INTO workflow_former_names (workflow_id, name, name_folded) VALUES (OLD.id, OLD.name, OLD.name_folded);
END;
--> statement-breakpoint
-- A rename that left the fold as it was, to a name that differs beyond ASCII case (an older
-- Worker's, or a hand-written UPDATE): the fold is stale, so it becomes "not folded yet". A rename
-- that changes ASCII case only keeps its fold, which is still right.
CREATE TRIGGER `workflows_unfold_stale_name` AFTER UPDATE OF `name` ON `workflows`
WHEN NEW.name_folded IS OLD.name_folded AND lower(OLD.name) <> lower(NEW.name)
BEGIN
  UPDATE workflows SET name_folded = NULL WHERE id = NEW.id;
END;
