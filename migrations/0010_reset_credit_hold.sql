DROP INDEX `credit_ledger_run_charge_uq`;--> statement-breakpoint
CREATE UNIQUE INDEX `credit_ledger_run_charge_uq` ON `credit_ledger` (`run_id`) WHERE kind = 'charge' AND id = 'charge:' || run_id;--> statement-breakpoint
ALTER TABLE `runs` ADD `credit_tokens_base` integer;--> statement-breakpoint
-- A reset takes a hold again (docs/credits.md, "A reset"): the reset route's one conditional
-- UPDATE sets the row's credit_hold (and credit_tokens_base := tokens_total), and every later change
-- of a row's credit_hold (that hold, its undo when the host refuses the reset, the settlement's
-- release) moves credits_reserved by the difference, so credits_reserved stays the sum of the
-- runs' credit_hold. No CASE expressions in trigger bodies (see 0009).
CREATE TRIGGER `runs_credit_hold_on_update` AFTER UPDATE OF `credit_hold` ON `runs`
WHEN NEW.credit_hold <> OLD.credit_hold
BEGIN
  UPDATE organizations SET credits_reserved = MAX(0, credits_reserved + NEW.credit_hold - OLD.credit_hold) WHERE id = NEW.organization_id;
END;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `runs_credit_settle_on_final`;
--> statement-breakpoint
-- As in 0009, except: the charge is the tokens the run added since its hold was taken
-- (tokens_total - credit_tokens_base; the base is NULL, so 0, unless a reset took the hold), the
-- hold is released by runs_credit_hold_on_update when the row's credit_hold goes to 0, a reset's
-- settlement gets its own ledger row ('charge:<run>:<temporal run>'), and credits_charged adds up.
CREATE TRIGGER `runs_credit_settle_on_final` AFTER UPDATE OF `status` ON `runs`
WHEN NEW.credit_hold > 0
  AND NEW.status IN ('completed', 'failed', 'cancelled', 'terminated', 'timed_out', 'continued_as_new')
BEGIN
  UPDATE organizations SET
    credit_balance = credit_balance - MIN(MAX(0, NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)), NEW.credit_hold) * (NEW.status = 'completed')
  WHERE id = NEW.organization_id;
  INSERT OR IGNORE INTO credit_ledger (id, organization_id, kind, amount, balance_after, run_id, note)
  SELECT 'charge:' || NEW.id || IIF(NEW.credit_tokens_base IS NULL, '', ':' || COALESCE(NEW.temporal_run_id, '')), o.id, 'charge',
    -MIN(MAX(0, NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)), NEW.credit_hold) * (NEW.status = 'completed'),
    o.credit_balance, NEW.id,
    IIF(NEW.status = 'completed', MAX(0, NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)) || ' tokens', 'run ' || NEW.status || ': not charged')
  FROM organizations o WHERE o.id = NEW.organization_id AND o.credit_balance IS NOT NULL;
  UPDATE runs SET
    credits_charged = COALESCE(NEW.credits_charged, 0) + MIN(MAX(0, NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)), NEW.credit_hold) * (NEW.status = 'completed'),
    credit_hold = 0
  WHERE id = NEW.id;
END;
