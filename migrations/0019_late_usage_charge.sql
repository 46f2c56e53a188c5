-- Usage reported after a completed run was settled (docs/credits.md, "Consequences worth knowing").
-- The settlement happens once, when the run's end is recorded, from the totals then. A run's usage
-- can reach the edge later: the host's event journal delivers it after an outage, while the edge
-- may already have recorded the end from the host's answer (a result read, the watchdog). That
-- usage was counted in tokens_total and never charged. Now the settlement keeps what the run's
-- hold has left (credit_cap_left), and each later rise of tokens_total of a settled completed run
-- is charged from it: a run is still never charged more than its hold, in all. No CASE
-- expressions in trigger bodies (see 0009).
ALTER TABLE `runs` ADD `credit_cap_left` integer;
--> statement-breakpoint
DROP TRIGGER IF EXISTS `runs_credit_settle_on_final`;
--> statement-breakpoint
-- As in 0010, and the row keeps what the hold has left after a completed run's charge (0 for
-- every other outcome, which is charged nothing, late usage included).
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
    credit_cap_left = (NEW.credit_hold - MIN(MAX(0, NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)), NEW.credit_hold)) * (NEW.status = 'completed'),
    credit_hold = 0
  WHERE id = NEW.id;
END;
--> statement-breakpoint
-- Usage added to a settled completed run (no hold: a reset's hold charges what its run adds when
-- it settles) is charged, at most what the hold has left, with a ledger row of its own per rise.
CREATE TRIGGER `runs_credit_charge_late_usage` AFTER UPDATE OF `tokens_total` ON `runs`
WHEN NEW.credit_hold = 0 AND NEW.credit_cap_left > 0 AND NEW.status = 'completed' AND NEW.tokens_total > OLD.tokens_total
BEGIN
  UPDATE organizations SET credit_balance = credit_balance - MIN(NEW.tokens_total - OLD.tokens_total, NEW.credit_cap_left)
  WHERE id = NEW.organization_id;
  INSERT OR IGNORE INTO credit_ledger (id, organization_id, kind, amount, balance_after, run_id, note)
  SELECT 'charge:' || NEW.id || ':late:' || NEW.tokens_total, o.id, 'charge', -MIN(NEW.tokens_total - OLD.tokens_total, NEW.credit_cap_left),
    o.credit_balance, NEW.id, MIN(NEW.tokens_total - OLD.tokens_total, NEW.credit_cap_left) || ' tokens reported after the run ended'
  FROM organizations o WHERE o.id = NEW.organization_id AND o.credit_balance IS NOT NULL;
  UPDATE runs SET
    credits_charged = COALESCE(NEW.credits_charged, 0) + MIN(NEW.tokens_total - OLD.tokens_total, NEW.credit_cap_left),
    credit_cap_left = NEW.credit_cap_left - MIN(NEW.tokens_total - OLD.tokens_total, NEW.credit_cap_left)
  WHERE id = NEW.id;
END;
