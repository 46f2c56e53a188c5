/**
 * Credits: an organization's balance, the holds of its runs in flight, and the ledger.
 *
 * A run holds its most expensive possible charge before it starts (reserve), and when it ends its
 * RunStream charges the real usage and releases the hold (settle). Both are single SQL statements
 * (or one D1 batch, which is one transaction), so concurrent starts can never hold more than the
 * balance, and a settlement that is retried is a no-op. Unmetered organizations (balance NULL)
 * hold nothing.
 */
import { desc, eq } from "drizzle-orm";
import { db } from "./client.ts";
import { creditLedger, organizations } from "./schema.ts";

export type ReserveOutcome = { ok: true; metered: boolean } | { ok: false; available: number };

/**
 * Credits available to new holds: balance - reserved, the one formula every view uses (null for
 * an unmetered organization). Never negative unless an operator removed credits with allowDebt.
 */
export function availableCredits(balance: number | null, reserved: number): number | null {
  return balance === null ? null : balance - reserved;
}

/**
 * Holds `amount` credits for a run if the organization has them available. An unmetered
 * organization costs one read; for a metered one the hold is one conditional UPDATE, so
 * concurrent holds can never exceed the balance.
 */
export async function reserveCredits(d1: D1Database, organizationId: string, amount: number): Promise<ReserveOutcome> {
  return reserveCreditsOf(d1, organizationId, amount, await creditBalance(d1, organizationId));
}

/** The organization's balance (null: unmetered), read on its own so a caller can read it alongside other things. */
export function creditBalance(d1: D1Database, organizationId: string): Promise<{ balance: number | null } | null> {
  return d1
    .prepare("SELECT credit_balance AS balance FROM organizations WHERE id = ?")
    .bind(organizationId)
    .first<{ balance: number | null }>();
}

/** reserveCredits with the balance already read: unmetered costs nothing more, metered one conditional UPDATE. */
export async function reserveCreditsOf(
  d1: D1Database,
  organizationId: string,
  amount: number,
  org: { balance: number | null } | null,
): Promise<ReserveOutcome> {
  if (!org || org.balance === null) return { ok: true, metered: false };
  const held = await d1
    .prepare(
      `UPDATE organizations SET credits_reserved = credits_reserved + ?1
       WHERE id = ?2 AND credit_balance IS NOT NULL AND credit_balance - credits_reserved >= ?1
       RETURNING id`,
    )
    .bind(amount, organizationId)
    .first();
  if (held) return { ok: true, metered: true };
  const now = await d1
    .prepare("SELECT credit_balance AS balance, credits_reserved AS reserved FROM organizations WHERE id = ?")
    .bind(organizationId)
    .first<{ balance: number; reserved: number }>();
  return { ok: false, available: availableCredits(now?.balance ?? 0, now?.reserved ?? 0)! };
}

/** Gives back a hold whose run never started. */
export function releaseCreditsStatement(d1: D1Database, organizationId: string, amount: number): D1PreparedStatement {
  return d1.prepare("UPDATE organizations SET credits_reserved = MAX(0, credits_reserved - ?) WHERE id = ?").bind(amount, organizationId);
}

/**
 * The statements that settle a finished run (for RunStream's D1 batch, after its status update):
 * a completed run is charged its tokens (capped at its hold), any other outcome nothing; the
 * hold is released and the ledger gets one `charge` row. Runs with no hold are left alone, so
 * running these twice charges once.
 */
export function settleCreditsStatements(d1: D1Database, temporalWorkflowId: string, ledgerId: string, at: string): D1PreparedStatement[] {
  const run = "SELECT * FROM runs WHERE temporal_workflow_id = ?1 AND credit_hold > 0";
  const charge = "(CASE WHEN r.status = 'completed' THEN MIN(r.tokens_total, r.credit_hold) ELSE 0 END)";
  return [
    d1
      .prepare(
        `UPDATE organizations SET
           credit_balance = credit_balance - (SELECT ${charge} FROM (${run}) r),
           credits_reserved = MAX(0, credits_reserved - (SELECT r.credit_hold FROM (${run}) r))
         WHERE id = (SELECT r.organization_id FROM (${run}) r)`,
      )
      .bind(temporalWorkflowId),
    d1
      .prepare(
        `INSERT OR IGNORE INTO credit_ledger (id, organization_id, kind, amount, balance_after, run_id, note, created_at)
         SELECT ?2, r.organization_id, 'charge', -${charge}, o.credit_balance, r.id,
           CASE WHEN r.status = 'completed' THEN r.tokens_total || ' tokens' ELSE 'run ' || r.status || ': not charged' END, ?3
         FROM (${run}) r JOIN organizations o ON o.id = r.organization_id`,
      )
      .bind(temporalWorkflowId, ledgerId, at),
    d1
      .prepare(
        `UPDATE runs SET credits_charged = CASE WHEN status = 'completed' THEN MIN(tokens_total, credit_hold) ELSE 0 END, credit_hold = 0
         WHERE temporal_workflow_id = ?1 AND credit_hold > 0`,
      )
      .bind(temporalWorkflowId),
  ];
}

export type GrantOutcome =
  | { ok: true; entry: typeof creditLedger.$inferSelect | null }
  | { ok: false; balance: number | null; reserved: number; available: number };

/**
 * Adds (or, negative, removes) credits; the first grant turns metering on. A removal larger than
 * what is available (balance - reserved: credits held by runs in flight stay covered) is refused
 * unless `allowDebt`, in which case the balance may go below zero. The check and the change are
 * one conditional UPDATE, and the ledger row is written only if it applied (one D1 batch, one
 * transaction), so concurrent removals cannot overdraw either.
 */
export async function grantCredits(
  d1: D1Database,
  organizationId: string,
  amount: number,
  note: string,
  allowDebt = false,
): Promise<GrantOutcome> {
  const id = crypto.randomUUID();
  const [updated] = await d1.batch([
    d1
      .prepare(
        `UPDATE organizations SET credit_balance = COALESCE(credit_balance, 0) + ?1
         WHERE id = ?2 AND (?1 > 0 OR ?3 = 1 OR COALESCE(credit_balance, 0) - credits_reserved + ?1 >= 0)`,
      )
      .bind(amount, organizationId, allowDebt ? 1 : 0),
    d1
      .prepare(
        `INSERT INTO credit_ledger (id, organization_id, kind, amount, balance_after, note)
         SELECT ?, id, 'grant', ?, credit_balance, ? FROM organizations WHERE id = ? AND changes() = 1`,
      )
      .bind(id, amount, note, organizationId),
  ]);
  if (updated!.meta.changes === 0) {
    const now = await d1
      .prepare("SELECT credit_balance AS balance, credits_reserved AS reserved FROM organizations WHERE id = ?")
      .bind(organizationId)
      .first<{ balance: number | null; reserved: number }>();
    const balance = now?.balance ?? null;
    const reserved = now?.reserved ?? 0;
    return { ok: false, balance, reserved, available: availableCredits(balance ?? 0, reserved)! };
  }
  return { ok: true, entry: (await db(d1).select().from(creditLedger).where(eq(creditLedger.id, id)).limit(1))[0] ?? null };
}

export async function creditSummary(d1: D1Database, organizationId: string, limit: number) {
  const org = (await db(d1).select().from(organizations).where(eq(organizations.id, organizationId)).limit(1))[0];
  if (!org) return null;
  const ledger = await db(d1)
    .select()
    .from(creditLedger)
    .where(eq(creditLedger.organizationId, organizationId))
    .orderBy(desc(creditLedger.createdAt), desc(creditLedger.id))
    .limit(limit);
  const metered = org.creditBalance !== null;
  return {
    organizationId,
    metered,
    balance: org.creditBalance,
    reserved: org.creditsReserved,
    available: availableCredits(org.creditBalance, org.creditsReserved),
    ledger,
  };
}
