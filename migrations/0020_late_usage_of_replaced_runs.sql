-- Usage of a run that a reset replaced is not the reset's run's (docs/credits.md, "A reset").
-- A replaced run can still report usage after the reset: an activity Temporal's terminate did not
-- stop, or the host's event journal after an outage. The projection adds it to tokens_total (what
-- the workflow used in all) and to credit_tokens_base, the reset's starting point, so that the
-- reset's settlement (tokens_total - credit_tokens_base, migration 0010) never charges it. This
-- trigger, from 0019, charged every later rise of tokens_total of a settled completed run; it now
-- charges the rise of tokens_total - credit_tokens_base, so a replaced run's usage reported after
-- the reset's run settled is not charged from that run's hold either. No CASE expressions in
-- trigger bodies (see 0009).
DROP TRIGGER IF EXISTS `runs_credit_charge_late_usage`;
--> statement-breakpoint
CREATE TRIGGER `runs_credit_charge_late_usage` AFTER UPDATE OF `tokens_total` ON `runs`
WHEN NEW.credit_hold = 0 AND NEW.credit_cap_left > 0 AND NEW.status = 'completed'
  AND NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0) > OLD.tokens_total - COALESCE(OLD.credit_tokens_base, 0)
BEGIN
  UPDATE organizations SET credit_balance = credit_balance - MIN(
    (NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)) - (OLD.tokens_total - COALESCE(OLD.credit_tokens_base, 0)), NEW.credit_cap_left)
  WHERE id = NEW.organization_id;
  INSERT OR IGNORE INTO credit_ledger (id, organization_id, kind, amount, balance_after, run_id, note)
  SELECT 'charge:' || NEW.id || ':late:' || NEW.tokens_total, o.id, 'charge',
    -MIN((NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)) - (OLD.tokens_total - COALESCE(OLD.credit_tokens_base, 0)), NEW.credit_cap_left),
    o.credit_balance, NEW.id,
    MIN((NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)) - (OLD.tokens_total - COALESCE(OLD.credit_tokens_base, 0)), NEW.credit_cap_left)
      || ' tokens reported after the run ended'
  FROM organizations o WHERE o.id = NEW.organization_id AND o.credit_balance IS NOT NULL;
  UPDATE runs SET
    credits_charged = COALESCE(NEW.credits_charged, 0)
      + MIN((NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)) - (OLD.tokens_total - COALESCE(OLD.credit_tokens_base, 0)), NEW.credit_cap_left),
    credit_cap_left = NEW.credit_cap_left
      - MIN((NEW.tokens_total - COALESCE(NEW.credit_tokens_base, 0)) - (OLD.tokens_total - COALESCE(OLD.credit_tokens_base, 0)), NEW.credit_cap_left)
  WHERE id = NEW.id;
END;
