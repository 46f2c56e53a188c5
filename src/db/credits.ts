/**
 * Credits: an organization's balance, the holds of its runs in flight, and the ledger.
 *
 * A run holds its most expensive possible charge before it starts, and when it ends it is charged
 * its real usage and the hold is released. The code writes only the run's row; triggers on `runs`
 * (migrations 0009_credit_triggers.sql, 0010_reset_credit_hold.sql, 0019_late_usage_charge.sql and 0020_late_usage_of_replaced_runs.sql) do the rest inside the same
 * statement: a row inserted with a hold reserves it, a change of a row's hold (a reset's) moves the
 * reservation by the difference, a row reaching a final status with a hold is settled (charge, ledger
 * row, hold released, once), a row deleted with a hold gives it back. So concurrent starts never
 * hold more than the balance, a settlement that is retried is a no-op, and an organization's
 * `credits_reserved` is always the sum of its runs' `credit_hold`. Unmetered organizations
 * (balance NULL) hold nothing. See docs/credits.md.
 */
import { and, desc, eq } from "drizzle-orm";
import { db } from "./client.ts";
import { creditLedger, organizations, type PromptDefinition } from "./schema.ts";
import { type PageCursor, olderThan, pageOf } from "./page-cursor.ts";

/**
 * Credits available to new holds: balance - reserved, the one formula every view uses (null for
 * an unmetered organization). Negative only after an operator removed credits with allowDebt, or
 * after usage that reached a completed run past its end was charged (docs/credits.md).
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
  /** A prompt run's start: what it holds (metered or not) and its webSearch flag (runs.prompt_hold, prompt_web_search). */
  prompt?: { hold: number; webSearch: boolean };
}

export type AcceptOutcome =
  | { ok: true; creditHold: number }
  | { ok: false; reason: "credits"; available: number }
  | { ok: false; reason: "open_runs"; limit: number };

/**
 * The run's `scheduled` row and its credit hold, all or nothing, in one statement (so concurrent
 * starts never hold more than the balance): the row is inserted only if the organization is
 * unmetered (hold 0) or has `amount` credits available (hold `amount`), `INSERT … SELECT … FROM
 * organizations WHERE …`, and the trigger `runs_credit_hold_on_insert` adds the row's hold to
 * the organization's `credits_reserved` in the same statement.
 *
 * The same statement refuses the run when the organization already has `maxOpenRuns` runs that
 * have not ended (`organizations.open_runs`, kept by triggers on `runs`, migration 0015), so that
 * no tenant can keep an unbounded number of runs, each followed by the host, open at once.
 *
 * The balance is read only to report a refusal (`available`). A run id or workflow id already
 * taken throws D1's UNIQUE error and writes nothing.
 */
export async function acceptRunWithHold(
  d1: D1Database,
  row: AcceptedRunRow,
  amount: number,
  maxOpenRuns: number,
  retried = false,
): Promise<AcceptOutcome> {
  const inserted = await d1
    .prepare(
      `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input, env_names, credit_hold, prompt_hold, prompt_web_search)
       SELECT ?1, o.id, ?2, ?3, ?4, 'scheduled', ?5, ?6, CASE WHEN o.credit_balance IS NULL THEN 0 ELSE ?8 END, ?10, ?11
       FROM organizations o
       WHERE o.id = ?7 AND (o.credit_balance IS NULL OR o.credit_balance - o.credits_reserved >= ?8)
         AND o.open_runs < ?9
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
      maxOpenRuns,
      row.prompt?.hold ?? null,
      row.prompt === undefined ? null : row.prompt.webSearch ? 1 : 0,
    )
    .first<{ credit_hold: number }>();
  if (inserted) return { ok: true, creditHold: inserted.credit_hold };
  // Refused: the one read, to say why (and how much is available).
  const now = await d1
    .prepare("SELECT credit_balance AS balance, credits_reserved AS reserved, open_runs AS open FROM organizations WHERE id = ?")
    .bind(row.organizationId)
    .first<{ balance: number | null; reserved: number; open: number }>();
  if (!now) throw new Error(`organization ${row.organizationId} not found`);
  if (now.open >= maxOpenRuns) return { ok: false, reason: "open_runs", limit: maxOpenRuns };
  const available = availableCredits(now.balance ?? 0, now.reserved)!;
  // Neither holds any more (metering turned off, credits granted or a run ended in between): try
  // again once, as things are now, rather than report a refusal that no longer applies.
  if ((now.balance === null || available >= amount) && !retried) return acceptRunWithHold(d1, row, amount, maxOpenRuns, true);
  return { ok: false, reason: "credits", available };
}

/**
 * Undoes an accepted run that never started (the host refused it, or the outcome of the accepting
 * statement is unknown): the row is removed only while it is still `scheduled`, and the trigger
 * `runs_credit_release_on_delete` gives its hold back in the same statement. A no-op when there
 * is nothing to undo.
 */
export function undoAcceptedRunStatement(d1: D1Database, runUuid: string): D1PreparedStatement {
  return d1.prepare("DELETE FROM runs WHERE id = ? AND status = 'scheduled'").bind(runUuid);
}

/**
 * Settles a finished run that the code before migration 0009 left holding (its finish was written,
 * its settlement batch was not): rewriting the row's final status fires `runs_credit_settle_on_final`,
 * which settles a row that still holds credits and does nothing otherwise (so it is safe to repeat).
 */
export function settleHeldFinishedRunStatement(d1: D1Database, temporalWorkflowId: string): D1PreparedStatement {
  return d1.prepare("UPDATE runs SET status = status WHERE temporal_workflow_id = ? AND credit_hold > 0").bind(temporalWorkflowId);
}

/** What a reset's hold is sized from: the run's kind, and for a prompt run its definition and variables. */
export interface ResetHoldBasis {
  kind: "code" | "prompt";
  prompt: PromptDefinition | null;
  input: unknown;
  /** What the run's start held (runs.prompt_hold; null for code runs and older rows). */
  startHold: number | null;
}

/** What the row held before a reset's hold (the undo puts it back). Plain data: it crosses the DO's RPC and its storage. */
export interface ResetHoldUndo {
  runUuid: string;
  amount: number;
  hold: number;
  base: number | null;
}

export type ResetHoldOutcome =
  | { ok: true; held: false }
  | { ok: true; held: true; amount: number; undo: ResetHoldUndo }
  | { ok: false; reason: "credits"; amount: number; available: number }
  /** The run has ended and the organization has `limit` runs open: a reset would open one more. */
  | { ok: false; reason: "open_runs"; limit: number };

/**
 * A reset of a metered organization's run holds credits like a start of that run's kind
 * (`amountFor`, given the run's kind, prompt and input): one conditional UPDATE of the run's row
 * sets its `credit_hold` to the amount (and `credit_tokens_base` to the tokens counted so far, so
 * the reset's run is charged only what it adds) if the organization has it available, counting
 * what the row already holds (a run still going keeps its hold, topped up or trimmed to the
 * amount); the trigger `runs_credit_hold_on_update` moves `credits_reserved` by the difference in
 * the same statement. An unmetered organization holds nothing (`held: false`).
 *
 * `undo` says what the row held before (`undoResetHoldStatement` puts it back): for a reset the
 * host refuses. The row is read from the primary first, for those values, and `undo` is handed to
 * `beforeHold` before the UPDATE goes out: an UPDATE whose answer is lost may have been applied,
 * and its caller must be able to put the row back all the same (the undo changes nothing if it
 * was not). Runs in the run's DO (home region), which also marks the reset pending
 * (durable-objects/run-stream/reset-mark.ts).
 *
 * A reset of a run that has ended opens it again, so, metered or not, it is refused as a start
 * is when the organization already has `maxOpenRuns` runs open (the same read; like a start's,
 * the count is what D1 says at that moment).
 */
export async function holdForReset(
  d1: D1Database,
  organizationId: string,
  runUuid: string,
  amountFor: (basis: ResetHoldBasis) => number,
  maxOpenRuns: number,
  beforeHold: (undo: ResetHoldUndo) => void = () => undefined,
): Promise<ResetHoldOutcome> {
  const before = await d1
    .prepare(
      `SELECT r.credit_hold AS hold, r.credit_tokens_base AS base, r.input AS input, w.kind AS kind, w.prompt AS prompt, r.prompt_hold AS startHold,
         r.status IN ('scheduled', 'running') AS open, o.open_runs AS openRuns,
         o.credit_balance AS balance, o.credits_reserved AS reserved
       FROM runs r JOIN organizations o ON o.id = r.organization_id LEFT JOIN workflows w ON w.id = r.workflow_id
       WHERE r.id = ? AND r.organization_id = ?`,
    )
    .bind(runUuid, organizationId)
    .first<{
      hold: number;
      base: number | null;
      input: string | null;
      kind: string | null;
      prompt: string | null;
      startHold: number | null;
      open: number;
      openRuns: number;
      balance: number | null;
      reserved: number;
    }>();
  if (!before) return { ok: true, held: false };
  // Open means what migration 0015's trigger counts: scheduled or running.
  if (!before.open && before.openRuns >= maxOpenRuns) return { ok: false, reason: "open_runs", limit: maxOpenRuns };
  if (before.balance === null) return { ok: true, held: false };
  const amount = amountFor({
    kind: before.kind === "prompt" ? "prompt" : "code",
    prompt: before.prompt === null ? null : (JSON.parse(before.prompt) as PromptDefinition),
    input: before.input === null ? null : JSON.parse(before.input),
    startHold: before.startHold,
  });
  const undo: ResetHoldUndo = { runUuid, amount, hold: before.hold, base: before.base };
  beforeHold(undo);
  const updated = await d1
    .prepare(
      `UPDATE runs SET credit_hold = ?1, credit_tokens_base = tokens_total
       WHERE id = ?2 AND organization_id = ?3 AND credit_hold = ?4
         AND EXISTS (SELECT 1 FROM organizations o WHERE o.id = ?3 AND o.credit_balance IS NOT NULL
                     AND o.credit_balance - o.credits_reserved + runs.credit_hold >= ?1)`,
    )
    .bind(amount, runUuid, organizationId, before.hold)
    .run();
  if (updated.meta.changes === 0) {
    const now = await d1
      .prepare("SELECT credit_balance AS balance, credits_reserved AS reserved FROM organizations WHERE id = ?")
      .bind(organizationId)
      .first<{ balance: number | null; reserved: number }>();
    // Metering turned off in between: nothing to hold.
    if (!now || now.balance === null) return { ok: true, held: false };
    return { ok: false, reason: "credits", amount, available: availableCredits(now.balance, now.reserved)! + before.hold };
  }
  return { ok: true, held: true, amount, undo };
}

/** Puts a reset's hold back as it was (only if the row still holds exactly that hold): the host refused the reset. */
export function undoResetHoldStatement(d1: D1Database, undo: ResetHoldUndo): D1PreparedStatement {
  return d1
    .prepare("UPDATE runs SET credit_hold = ?1, credit_tokens_base = ?2 WHERE id = ?3 AND credit_hold = ?4")
    .bind(undo.hold, undo.base, undo.runUuid, undo.amount);
}

/**
 * The most a balance may hold either way (credits). JSON numbers, and so every client reading a
 * balance, are exact only up to 2^53 (about 9 * 10^15); a grant that would take the balance past
 * this is refused rather than leave a balance that reads back as another number.
 */
export const MAX_CREDIT_BALANCE = 1_000_000_000_000_000;

export type GrantOutcome =
  | { ok: true; entry: typeof creditLedger.$inferSelect | null; replayed?: true }
  | { ok: false; balance: number | null; reserved: number; available: number; pastLimit: boolean }
  /** The Idempotency-Key names an earlier grant of another amount or note. */
  | { ok: false; reused: true };

/**
 * Adds (or, negative, removes) credits; the first grant turns metering on. A removal larger than
 * what is available (balance - reserved: credits held by runs in flight stay covered) is refused
 * unless `allowDebt`, in which case the balance may go below zero. A removal from an organization
 * that is not metered is refused, `allowDebt` or not (it would turn metering on, in debt). The
 * check and the change are one conditional UPDATE, and the ledger row is written only if it applied
 * (one D1 batch, one transaction), so concurrent removals cannot overdraw either.
 */
export async function grantCredits(
  d1: D1Database,
  organizationId: string,
  amount: number,
  note: string,
  allowDebt = false,
  /** The request's Idempotency-Key: the grant's ledger id, so a retry of a grant applies it once. */
  idempotencyKey: string | null = null,
): Promise<GrantOutcome> {
  const id = idempotencyKey === null ? crypto.randomUUID() : `grant:${organizationId}:${idempotencyKey}`;
  const [updated] = await d1.batch([
    d1
      .prepare(
        `UPDATE organizations SET credit_balance = COALESCE(credit_balance, 0) + ?1
         WHERE id = ?2 AND (?1 > 0 OR (credit_balance IS NOT NULL AND (?3 = 1 OR credit_balance - credits_reserved + ?1 >= 0)))
           AND ABS(COALESCE(credit_balance, 0) + ?1) <= ?5
           AND NOT EXISTS (SELECT 1 FROM credit_ledger WHERE id = ?4)`,
      )
      .bind(amount, organizationId, allowDebt ? 1 : 0, id, MAX_CREDIT_BALANCE),
    d1
      .prepare(
        `INSERT INTO credit_ledger (id, organization_id, kind, amount, balance_after, note)
         SELECT ?, id, 'grant', ?, credit_balance, ? FROM organizations WHERE id = ? AND changes() = 1`,
      )
      .bind(id, amount, note, organizationId),
  ]);
  if (updated!.meta.changes === 0) {
    if (idempotencyKey !== null) {
      // The key's grant was applied before (a retry whose first answer was lost): the same answer again.
      const earlier = (await db(d1).select().from(creditLedger).where(eq(creditLedger.id, id)).limit(1))[0];
      if (earlier)
        return earlier.amount === amount && earlier.note === note
          ? { ok: true, entry: earlier, replayed: true }
          : { ok: false, reused: true };
    }
    const now = await d1
      .prepare("SELECT credit_balance AS balance, credits_reserved AS reserved FROM organizations WHERE id = ?")
      .bind(organizationId)
      .first<{ balance: number | null; reserved: number }>();
    const balance = now?.balance ?? null;
    const reserved = now?.reserved ?? 0;
    const pastLimit = Math.abs((balance ?? 0) + amount) > MAX_CREDIT_BALANCE;
    return { ok: false, balance, reserved, available: availableCredits(balance ?? 0, reserved)!, pastLimit };
  }
  return { ok: true, entry: (await db(d1).select().from(creditLedger).where(eq(creditLedger.id, id)).limit(1))[0] ?? null };
}

/**
 * The organization's credits and its ledger, newest first, `limit` entries from `before` on (the
 * ledger keeps growing: one row per finished metered run). `next` continues from the last entry
 * shown, null when there is nothing older.
 */
export async function creditSummary(d1: D1Database, organizationId: string, limit: number, before: PageCursor | null = null) {
  const org = (await db(d1).select().from(organizations).where(eq(organizations.id, organizationId)).limit(1))[0];
  if (!org) return null;
  const rows = await db(d1)
    .select()
    .from(creditLedger)
    .where(and(eq(creditLedger.organizationId, organizationId), olderThan(creditLedger.createdAt, creditLedger.id, before)))
    .orderBy(desc(creditLedger.createdAt), desc(creditLedger.id))
    .limit(limit + 1);
  const { page: ledger, next } = pageOf(rows, limit);
  const metered = org.creditBalance !== null;
  return {
    organizationId,
    metered,
    balance: org.creditBalance,
    reserved: org.creditsReserved,
    available: availableCredits(org.creditBalance, org.creditsReserved),
    ledger,
    next,
  };
}
