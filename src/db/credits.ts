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

/**
 * Credits available to new holds: balance - reserved, the one formula every view uses (null for
 * an unmetered organization). Never negative unless an operator removed credits with allowDebt.
 */
export function availableCredits(balance: number | null, reserved: number): number | null {
  return balance === null ? null : balance - reserved;
}

/** A run row to accept: what the start path knows before the hold (the hold is decided in SQL). */
export interface AcceptedRunRow {
  id: string;
  organizationId: string;
  /** The catalog row's id. */
  workflowId: string;
  workflowName: string;
  temporalWorkflowId: string;
  input: unknown;
  envNames: string[] | null;
}

export type AcceptOutcome = { ok: true; creditHold: number } | { ok: false; available: number };

/**
 * Which organizations were last seen unmetered, per isolate: only a hint for how many statements
 * to send (one for an unmetered organization, else two); the statements check the organization's
 * row themselves, so a stale hint costs a statement, never a wrong hold.
 */
const unmeteredHints = new Map<string, boolean>();
const UNMETERED_HINTS_MAX = 10_000;

function noteMetering(organizationId: string, unmetered: boolean): void {
  if (unmeteredHints.size >= UNMETERED_HINTS_MAX && !unmeteredHints.has(organizationId))
    unmeteredHints.delete(unmeteredHints.keys().next().value!);
  unmeteredHints.set(organizationId, unmetered);
}

/**
 * The run's `scheduled` row and its credit hold, all or nothing, checked and written by the same
 * statements (so concurrent starts never hold more than the balance):
 *
 * - the row is inserted only if the organization is unmetered (hold 0) or has `amount` credits
 *   available (hold `amount`): `INSERT … SELECT … FROM organizations WHERE …`;
 * - the organization's `credits_reserved` grows by the row's hold only if that row went in with
 *   one (same `db.batch`, one transaction).
 *
 * An organization last seen unmetered gets only the first statement, restricted to unmetered
 * organizations; if it has been metered since, nothing is written and the pair follows. The
 * balance is read only to report a refusal (`available`). A run id or workflow id already taken
 * throws D1's UNIQUE error and writes nothing.
 */
export async function acceptRunWithHold(d1: D1Database, row: AcceptedRunRow, amount: number, retried = false): Promise<AcceptOutcome> {
  const insert = (metered: boolean) =>
    d1
      .prepare(
        `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input, env_names, credit_hold)
         SELECT ?1, o.id, ?2, ?3, ?4, 'scheduled', ?5, ?6, CASE WHEN o.credit_balance IS NULL THEN 0 ELSE ?8 END
         FROM organizations o
         WHERE o.id = ?7 AND (o.credit_balance IS NULL ${metered ? "OR o.credit_balance - o.credits_reserved >= ?8" : ""})
         RETURNING credit_hold`,
      )
      .bind(
        row.id,
        row.workflowId,
        row.workflowName,
        row.temporalWorkflowId,
        JSON.stringify(row.input ?? null),
        row.envNames === null ? null : JSON.stringify(row.envNames),
        row.organizationId,
        amount,
      );
  if (unmeteredHints.get(row.organizationId)) {
    const inserted = await insert(false).first<{ credit_hold: number }>();
    if (inserted) return { ok: true, creditHold: 0 };
    noteMetering(row.organizationId, false);
  }
  const [inserted] = await d1.batch([
    insert(true),
    d1
      .prepare(
        `UPDATE organizations SET credits_reserved = credits_reserved + (SELECT credit_hold FROM runs WHERE id = ?1)
         WHERE id = ?2 AND EXISTS (SELECT 1 FROM runs WHERE id = ?1 AND credit_hold > 0)`,
      )
      .bind(row.id, row.organizationId),
  ]);
  const held = (inserted?.results?.[0] as { credit_hold: number } | undefined)?.credit_hold;
  if (held !== undefined) {
    noteMetering(row.organizationId, held === 0);
    return { ok: true, creditHold: held };
  }
  // Refused: the one read, to say how much is available.
  const now = await d1
    .prepare("SELECT credit_balance AS balance, credits_reserved AS reserved FROM organizations WHERE id = ?")
    .bind(row.organizationId)
    .first<{ balance: number | null; reserved: number }>();
  if (!now) throw new Error(`organization ${row.organizationId} not found`);
  // Metering turned off in between (the statements saw a metered organization): try again as it is now.
  if (now.balance === null && !retried) return acceptRunWithHold(d1, row, amount, true);
  return { ok: false, available: availableCredits(now.balance ?? 0, now.reserved)! };
}

/**
 * Undoes an accepted run that never started (the host refused it, or the outcome of the accepting
 * batch is unknown): the row's hold is given back and the row removed, only while it is still
 * `scheduled`. One batch; a no-op when there is nothing to undo.
 */
export function undoAcceptedRunStatements(d1: D1Database, runUuid: string): D1PreparedStatement[] {
  return [
    d1
      .prepare(
        `UPDATE organizations SET credits_reserved = MAX(0, credits_reserved - (SELECT credit_hold FROM runs WHERE id = ?1))
         WHERE id = (SELECT organization_id FROM runs WHERE id = ?1 AND status = 'scheduled' AND credit_hold > 0)`,
      )
      .bind(runUuid),
    d1.prepare("DELETE FROM runs WHERE id = ? AND status = 'scheduled'").bind(runUuid),
  ];
}

/**
 * The statements that settle a finished run (for RunStream's D1 batch, after its status update):
 * a completed run is charged its tokens (capped at its hold), any other outcome nothing; the
 * hold is released and the ledger gets one `charge` row. Runs with no hold are left alone, so
 * running these twice charges once.
 */
export function settleCreditsStatements(d1: D1Database, temporalWorkflowId: string, ledgerId: string, at: string): D1PreparedStatement[] {
  return [
    ...chargeStatements(d1, temporalWorkflowId, ledgerId, at, "r.status"),
    d1
      .prepare(
        `UPDATE runs SET credits_charged = CASE WHEN status = 'completed' THEN MIN(tokens_total, credit_hold) ELSE 0 END, credit_hold = 0
         WHERE temporal_workflow_id = ?1 AND credit_hold > 0`,
      )
      .bind(temporalWorkflowId),
  ];
}

/**
 * The settlement of a run that is finishing in the same batch, with its outcome known: the charge
 * and the ledger row, to be followed by the run's final UPDATE, which records `credits_charged`
 * and releases the row's hold itself (`settledRowSql`). Two statements instead of three; the
 * same amounts and ledger row as settleCreditsStatements, and a no-op for a row without a hold.
 */
export function settleFinishingRunStatements(
  d1: D1Database,
  temporalWorkflowId: string,
  ledgerId: string,
  at: string,
  status: string,
): D1PreparedStatement[] {
  return chargeStatements(d1, temporalWorkflowId, ledgerId, at, "?4", status);
}

/**
 * SET clauses of a run's final UPDATE that settle its row (`?status` is the bound outcome):
 * after settleFinishingRunStatements in the same batch.
 */
export const settledRowSql = (status: string) =>
  `credits_charged = CASE WHEN credit_hold > 0 THEN (CASE WHEN ${status} = 'completed' THEN MIN(tokens_total, credit_hold) ELSE 0 END) ELSE credits_charged END,
   credit_hold = 0`;

/** The charge to the organization and its ledger row; `status` is SQL for the run's outcome (the row's, or bound as ?4). */
function chargeStatements(
  d1: D1Database,
  temporalWorkflowId: string,
  ledgerId: string,
  at: string,
  status: "r.status" | "?4",
  boundStatus?: string,
): D1PreparedStatement[] {
  const run = "SELECT * FROM runs WHERE temporal_workflow_id = ?1 AND credit_hold > 0";
  const charge = `(CASE WHEN ${status} = 'completed' THEN MIN(r.tokens_total, r.credit_hold) ELSE 0 END)`;
  const bindStatus = boundStatus === undefined ? [] : [boundStatus];
  return [
    d1
      .prepare(
        `UPDATE organizations SET
           credit_balance = credit_balance - (SELECT ${charge} FROM (${run}) r),
           credits_reserved = MAX(0, credits_reserved - (SELECT r.credit_hold FROM (${run}) r))
         WHERE id = (SELECT r.organization_id FROM (${run}) r)`,
      )
      // (?2 and ?3 are unused here; bound so ?4 means the same in both statements.)
      .bind(temporalWorkflowId, ...(boundStatus === undefined ? [] : [ledgerId, at, boundStatus])),
    d1
      .prepare(
        `INSERT OR IGNORE INTO credit_ledger (id, organization_id, kind, amount, balance_after, run_id, note, created_at)
         SELECT ?2, r.organization_id, 'charge', -${charge}, o.credit_balance, r.id,
           CASE WHEN ${status} = 'completed' THEN r.tokens_total || ' tokens' ELSE 'run ' || ${status} || ': not charged' END, ?3
         FROM (${run}) r JOIN organizations o ON o.id = r.organization_id`,
      )
      .bind(temporalWorkflowId, ledgerId, at, ...bindStatus),
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
