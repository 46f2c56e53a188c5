-- Credits follow the run rows (docs/credits.md, "Who writes what"): the code writes only the run's
-- own row, and these triggers keep the organization's credits_reserved, balance and ledger in step
-- with it, inside the same statement (so inside the same transaction). The invariant they keep:
-- an organization's credits_reserved is the sum of its runs' credit_hold.
-- The trigger bodies use no CASE expressions (D1's remote statement splitter may cut a trigger at
-- their closing keyword): `(status = 'completed')` is 1 or 0, and IIF picks the ledger note.
--
-- A row inserted with a hold (acceptRunWithHold's conditional INSERT ... SELECT) reserves it.
CREATE TRIGGER `runs_credit_hold_on_insert` AFTER INSERT ON `runs`
WHEN NEW.credit_hold > 0
BEGIN
  UPDATE organizations SET credits_reserved = credits_reserved + NEW.credit_hold WHERE id = NEW.organization_id;
END;
--> statement-breakpoint
-- A row that reaches a final status while it still holds credits is settled, once: a completed
-- run is charged its tokens (capped at its hold), any other end nothing; the hold is released, the
-- ledger gets one `charge` row, and the row records the charge and holds 0 from then on (so a
-- repeated finish, a reset and a second finish find nothing left to settle).
CREATE TRIGGER `runs_credit_settle_on_final` AFTER UPDATE OF `status` ON `runs`
WHEN NEW.credit_hold > 0
  AND NEW.status IN ('completed', 'failed', 'cancelled', 'terminated', 'timed_out', 'continued_as_new')
BEGIN
  UPDATE organizations SET
    credit_balance = credit_balance - MIN(NEW.tokens_total, NEW.credit_hold) * (NEW.status = 'completed'),
    credits_reserved = MAX(0, credits_reserved - NEW.credit_hold)
  WHERE id = NEW.organization_id;
  INSERT OR IGNORE INTO credit_ledger (id, organization_id, kind, amount, balance_after, run_id, note)
  SELECT 'charge:' || NEW.id, o.id, 'charge', -MIN(NEW.tokens_total, NEW.credit_hold) * (NEW.status = 'completed'),
    o.credit_balance, NEW.id, IIF(NEW.status = 'completed', NEW.tokens_total || ' tokens', 'run ' || NEW.status || ': not charged')
  FROM organizations o WHERE o.id = NEW.organization_id AND o.credit_balance IS NOT NULL;
  UPDATE runs SET credits_charged = MIN(NEW.tokens_total, NEW.credit_hold) * (NEW.status = 'completed'), credit_hold = 0
  WHERE id = NEW.id;
END;
--> statement-breakpoint
-- A row removed while it holds credits (the undo of a start that never ran) gives its hold back.
CREATE TRIGGER `runs_credit_release_on_delete` AFTER DELETE ON `runs`
WHEN OLD.credit_hold > 0
BEGIN
  UPDATE organizations SET credits_reserved = MAX(0, credits_reserved - OLD.credit_hold) WHERE id = OLD.organization_id;
END;
--> statement-breakpoint
-- Catch-up for rows the code before this migration left between its two batches (finished, not
-- yet settled): the no-op status write fires the settlement above.
UPDATE runs SET status = status
WHERE credit_hold > 0 AND status IN ('completed', 'failed', 'cancelled', 'terminated', 'timed_out', 'continued_as_new');
--> statement-breakpoint
UPDATE organizations SET credits_reserved = (SELECT COALESCE(SUM(r.credit_hold), 0) FROM runs r WHERE r.organization_id = organizations.id)
WHERE credits_reserved <> (SELECT COALESCE(SUM(r.credit_hold), 0) FROM runs r WHERE r.organization_id = organizations.id);
