/**
 * The run's D1 row (and its step rows) projected from the log. The DO is their single writer.
 *
 * Every application is one `db.batch` (one D1 transaction; a backlog past MAX_ROWS_PER_BATCH rows
 * or PROJECTION_BATCH_MAX_CHARS, several, in log order): all rows not yet projected, merged
 * where D1 only needs the net effect (both ends of a step attempt are one upsert, all new
 * attributes one addition, a `run.started` whose run finishes in the same application is folded
 * into the finish), plus the waiting flag. Applications do not overlap: events that arrive while
 * one is in flight go together into the next, so a burst of pushes costs few batches.
 *
 * Credits: nothing here. The run's row carries its hold, and triggers on `runs` settle it when
 * the finish writes a final status (migrations/0009_credit_triggers.sql): the finishing batch
 * sends the same statements for a metered run as for an unmetered one. A log row left
 * "settlement pending" by the code before those triggers gets one idempotent statement that
 * settles its row if it still holds credits.
 * A failed batch leaves its rows pending: the next event or the watchdog retries them.
 */
import { settleHeldFinishedRunStatement } from "../../src/db/credits.ts";
import { selectRunRowStatement } from "../../src/db/runs.ts";
import { aggregate } from "../../src/shared/aggregations.ts";
import { stepRunId } from "../../src/shared/step-run-id.ts";
import { PROJECTION_STATE } from "./constants.ts";
import { rowError, rowErrorDetails, rowOutput } from "./row-limits.ts";
import type { EventLog, LogRow, LogRowOf, UnprojectedRow } from "./event-log.ts";
import type { FinishGate, UsageGate } from "./reset-mark.ts";
import type { WaitingDetector } from "./waiting.ts";

/**
 * How long the D1 row of a step attempt that has started may wait for the attempt's end, so that
 * both make one upsert (most steps end within it). The run's own rows are never held back, and
 * nothing is held back once the run has ended.
 */
export const STEP_START_GRACE_MS = 1_000;

/**
 * The most log rows one batch projects (each makes at most one statement). A backlog past it (a
 * long D1 outage, a fan-out of thousands of steps) goes in several batches, in log order, so the
 * run's finish is in the last: D1 counts each statement of a batch against what one invocation may
 * send (1,000 on Workers Paid), and a batch past that would fail on every retry, the row never
 * finishing.
 */
export const MAX_ROWS_PER_BATCH = 400;
/**
 * Most JSON (in characters) of the log rows one batch projects (a larger row is a batch of its
 * own): the batch's rows are read back whole from the log, and 400 step rows with outputs of up
 * to ~2 MiB each would be more than the DO's 128 MB.
 */
export const PROJECTION_BATCH_MAX_CHARS = 8 * 1024 * 1024;

/** Counts of what one application sent to D1 (tests and benches read them through logs if needed). */
export interface ProjectionResult {
  statements: number;
  batches: number;
  /**
   * The run's row as D1 has it after the application, read in its batch (no round trip of its
   * own) when a caller of `apply` asked for it (`readRow`) and the application wrote anything;
   * null if there is no row. Absent otherwise: the caller reads the row itself.
   */
  row?: Record<string, unknown> | null;
}

export class D1Projection {
  constructor(
    private readonly db: D1Database,
    private readonly log: EventLog,
    private readonly waiting: WaitingDetector,
    /** Told, for each finish D1 took, whether the run's organization has webhook endpoints (webhook-outbox.ts). */
    private readonly onFinished?: (runId: string, hasWebhooks: boolean) => void,
    /** Whether a run's final status goes to D1 now, waits (a reset is pending), or is dropped (reset-mark.ts). */
    private readonly finishGate: (runId: string) => FinishGate = () => "project",
    /** Whether a run's usage goes to D1 as its own, waits (a reset that may replace it is pending), or is a replaced run's (reset-mark.ts). */
    private readonly usageGate: (runId: string) => UsageGate = () => "project",
  ) {
    this.attributesInDoubt = log.unprojected().some((r) => r.type === "attribute");
  }

  /**
   * Whether D1 may already hold some pending attribute rows' totals: an application failed after
   * sending them (D1 may have committed it before the answer was lost), or this DO started with
   * attribute rows unprojected (its previous instance may have sent them). The next application
   * with attributes then reads the row's `attributes_through_seq` first and adds only newer ones.
   */
  private attributesInDoubt: boolean;

  private inFlight: Promise<ProjectionResult> | null = null;
  private next: Promise<ProjectionResult> | null = null;
  private nextChecksWaiting = false;
  private nextReadsRow = false;

  /**
   * Projects every pending row; `checkWaiting` also re-evaluates the waiting flag (after new
   * history); `readRow` also reads the run's row back in the same batch (a blocking start that
   * answers with it: ProjectionResult.row). While an application is in flight, callers share the
   * one that follows it, which takes every row appended in the meantime.
   */
  apply(workflowId: string, checkWaiting: boolean, readRow = false): Promise<ProjectionResult> {
    if (!this.inFlight) {
      const current = this.applyOnce(workflowId, checkWaiting, readRow).finally(() => {
        if (this.inFlight === current) this.inFlight = null;
      });
      this.inFlight = current;
      return current;
    }
    this.nextChecksWaiting ||= checkWaiting;
    this.nextReadsRow ||= readRow;
    this.next ??= this.inFlight
      .catch(() => undefined)
      .then(() => {
        const checks = this.nextChecksWaiting;
        const reads = this.nextReadsRow;
        this.next = null;
        this.nextChecksWaiting = false;
        this.nextReadsRow = false;
        return this.apply(workflowId, checks, reads);
      });
    return this.next;
  }

  /** When each step attempt's start was first held back (see STEP_START_GRACE_MS), by attempt. */
  private readonly startSeen = new Map<string, number>();
  private flushTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * Holds back a step attempt that has started and not ended, for up to STEP_START_GRACE_MS, so
   * that its end (usually close behind) makes one upsert with it; a timer projects it otherwise.
   */
  private deferStart(workflowId: string, step: MergedStep): boolean {
    if (step.status !== "running") return false;
    const key = stepKey(step);
    const now = Date.now();
    const since = this.startSeen.get(key);
    if (since === undefined) this.startSeen.set(key, now);
    else if (now - since >= STEP_START_GRACE_MS) return false;
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = null;
      this.apply(workflowId, false).catch((err: unknown) =>
        // The rows stay pending: the next event or the watchdog projects them.
        console.warn(JSON.stringify({ level: "warn", message: "step projection failed", workflowId, error: String(err) })),
      );
    }, STEP_START_GRACE_MS + 5);
    return true;
  }

  /**
   * One application: the pending rows in batches of at most MAX_ROWS_PER_BATCH rows and
   * PROJECTION_BATCH_MAX_CHARS, in log order, each read whole only for its batch; the waiting check
   * and the row's read go with the last. Rows a batch leaves pending (a step's start waiting for
   * its end, a finish a reset holds) are not taken again by this application. Once a batch holds
   * back an attribute row, the later batches hold back all of theirs: the held row is earlier in
   * the log, and `attributes_through_seq` must not pass it.
   */
  private async applyOnce(workflowId: string, checkWaiting: boolean, readRow: boolean): Promise<ProjectionResult> {
    const total: ProjectionResult = { statements: 0, batches: 0 };
    const leftPending = new Set<number>();
    let attributesHeld = false;
    for (;;) {
      // (One batch is the rule: nothing to leave out, no second copy of the rows on every push.)
      const unprojected = this.log.unprojected();
      const queue = leftPending.size === 0 ? unprojected : unprojected.filter((r) => !leftPending.has(r.seq));
      const size = batchSize(queue);
      const last = size === queue.length;
      // Nothing is held back once the run has ended, whichever batch its end is in.
      const endsLater = queue
        .slice(size)
        .some(
          (r) => r.type === "run.finished" && r.projected === PROJECTION_STATE.pending && r.runId !== null && !this.log.wasReset(r.runId),
        );
      const rows = this.log.unprojectedRows(queue.slice(0, size).map((r) => r.seq));
      const part = await this.applyBatch(workflowId, rows, endsLater, attributesHeld, last && checkWaiting, last && readRow);
      attributesHeld ||= part.attributesHeld;
      total.statements += part.statements;
      total.batches += part.batches;
      for (const seq of part.leftPending) leftPending.add(seq);
      if (last) return part.row !== undefined ? { ...total, row: part.row } : total;
    }
  }

  private async applyBatch(
    workflowId: string,
    rows: LogRow[],
    endsLater: boolean,
    /** An earlier batch of this application held back an attribute row: every one of this batch waits too. */
    holdAttributes: boolean,
    checkWaiting: boolean,
    readRow: boolean,
  ): Promise<ProjectionResult & { leftPending: number[]; attributesHeld: boolean }> {
    const pending = rows.filter((r) => r.projected === PROJECTION_STATE.pending);
    const settlementDue = rows.filter(
      (r): r is LogRowOf<"run.finished"> => r.projected === PROJECTION_STATE.settlementPending && r.type === "run.finished",
    );
    const now = new Date().toISOString();
    const statements: D1PreparedStatement[] = [];
    /** Index in `statements` of each finish, with its log row. */
    const finishes: Array<{ index: number; row: LogRowOf<"run.finished"> }> = [];

    /** Final statuses and usage left pending: a reset that may replace their run is in flight (reset-mark.ts). */
    const held = new Set<number>();
    const ends = pending.filter((r): r is LogRowOf<"run.finished"> => {
      // The end of a run that a reset replaced says nothing about the workflow any more.
      if (r.type !== "run.finished" || this.log.wasReset(r.data.runId)) return false;
      if (!isFinish(r)) return true;
      const gate = this.finishGate(r.data.runId);
      if (gate === "hold") held.add(r.seq);
      return gate === "project";
    });
    /** Runs that start and end in this application: their finish writes the start too (one UPDATE). */
    const startedAt = new Map<string, string>();
    for (const row of pending) {
      if (row.type !== "run.started") continue;
      const endsHere = !row.data.resetFromRunId && ends.some((e) => e.data.runId === row.data.runId && isFinish(e));
      if (endsHere) startedAt.set(row.data.runId, row.at);
      else statements.push(this.started(workflowId, row, now));
      // A reset's start clears the row's waiting flag: the check below (or the next) writes it again.
      if (row.data.resetFromRunId) this.waiting.forget();
    }
    const deferred = new Set<number>();
    const finishing = ends.length > 0 || endsLater;
    for (const step of mergeSteps(pending)) {
      if (!finishing && this.deferStart(workflowId, step)) {
        for (const seq of step.seqs) deferred.add(seq);
        continue;
      }
      this.startSeen.delete(stepKey(step));
      statements.push(await stepRunStatement(this.db, workflowId, step));
    }
    let attributes = pending.filter((r): r is LogRowOf<"attribute"> => r.type === "attribute");
    // Usage of a run a pending reset may replace waits for the reset's outcome, and every later
    // usage row with it, in this batch and the application's later ones: `attributes_through_seq`
    // assumes the rows D1 has are a prefix of the log's.
    const firstHeld = holdAttributes
      ? 0
      : attributes.findIndex((r) => !this.log.wasReset(r.data.runId) && this.usageGate(r.data.runId) === "hold");
    const attributesHeld = firstHeld >= 0 && attributes.length > 0;
    if (attributesHeld) {
      for (const r of attributes.slice(firstHeld)) held.add(r.seq);
      attributes = attributes.slice(0, firstHeld);
    }
    if (attributes.length > 0 && this.attributesInDoubt) {
      const through = await this.db
        .prepare("SELECT attributes_through_seq AS seq FROM runs WHERE temporal_workflow_id = ?")
        .bind(workflowId)
        .first<number>("seq");
      attributes = attributes.filter((r) => r.seq > (through ?? 0));
    }
    if (attributes.length > 0) statements.push(this.attributes(workflowId, attributes));
    for (const row of ends) {
      const statement = this.finished(workflowId, row, now, startedAt.get(row.data.runId));
      if (statement.finish) finishes.push({ index: statements.length, row });
      statements.push(statement.statement);
    }
    // Left pending by the code before the credit triggers: settle the row if it still holds (idempotent).
    if (settlementDue.length > 0) statements.push(settleHeldFinishedRunStatement(this.db, workflowId));
    const waitingChange = checkWaiting ? this.waiting.change(this.db, workflowId, now) : null;
    if (waitingChange) statements.push(waitingChange.statement);

    /** Every row this application takes care of: those with a statement, and those D1 needs nothing for. */
    const done = [...pending.filter((r) => !deferred.has(r.seq) && !held.has(r.seq)), ...settlementDue].map((r) => r.seq);
    let batches = 0;
    let row: Record<string, unknown> | null | undefined;
    if (statements.length === 0) {
      // Rows D1 needs nothing for (the late end of a run a reset replaced, usage D1 already has) are
      // done too: left pending, the run would never count as settled (its alarm, its webhook).
      this.log.markProjected(done);
    } else {
      // Last in the batch: the row as the writes (and the credit triggers they fire) leave it.
      const readIndex = readRow ? statements.push(selectRunRowStatement(this.db, workflowId)) - 1 : -1;
      let results: D1Result[];
      try {
        results = await this.db.batch(statements);
      } catch (err) {
        if (attributes.length > 0) this.attributesInDoubt = true;
        throw err;
      }
      if (attributes.length > 0) this.attributesInDoubt = false;
      batches++;
      for (const { index, row } of finishes) {
        const returned = results[index]?.results?.[0] as { has_webhooks?: number } | undefined;
        if (returned) this.onFinished?.(row.data.runId, Number(returned.has_webhooks ?? 0) > 0);
      }
      this.log.markProjected(done);
      if (waitingChange) this.waiting.committed(waitingChange.waiting);
      if (readIndex >= 0) row = (results[readIndex]?.results?.[0] as Record<string, unknown> | undefined) ?? null;
    }
    const leftPending = pending.filter((r) => deferred.has(r.seq) || held.has(r.seq)).map((r) => r.seq);
    return { statements: statements.length, batches, leftPending, attributesHeld, ...(row !== undefined ? { row } : {}) };
  }

  /** Only a scheduled row moves to running: a late start never undoes a finish. */
  private started(workflowId: string, row: LogRowOf<"run.started">, now: string): D1PreparedStatement {
    if (row.data.resetFromRunId) {
      // A Temporal reset replaced the run: the row follows the new run, open again. The row is on the
      // run it started from, or on the workflow's current run it took over from (a reset pinned to an earlier run).
      // What the replaced run's settlement left of its hold is not the new run's (migration 0019).
      return this.db
        .prepare(
          `UPDATE runs SET status = 'running', temporal_run_id = ?, completed_at = NULL, output = NULL, output_in_log = 0, error = NULL,
             error_details = NULL, waiting_since = NULL, credit_cap_left = NULL, updated_at = ?
           WHERE temporal_workflow_id = ? AND (temporal_run_id IS NULL OR temporal_run_id IN (?, ?))`,
        )
        .bind(row.data.runId, now, workflowId, row.data.resetFromRunId, row.data.replacedRunId ?? row.data.resetFromRunId);
    }
    return this.db
      .prepare(
        `UPDATE runs SET status = 'running', temporal_run_id = ?, started_at = COALESCE(started_at, ?), updated_at = ?
         WHERE temporal_workflow_id = ? AND status = 'scheduled'`,
      )
      .bind(row.data.runId, row.at, now, workflowId);
  }

  /**
   * Totals for listing and billing, and the newest attribute they include; the attributes
   * themselves stay in the log. `updated_at` is left as it is: it is the time of the run's last
   * status change (the Workflow Runs API's `updatedAt`), which usage is not.
   *
   * Tokens of a run a reset replaced count in the totals, what the workflow used in all, and move
   * the reset's starting point (`credit_tokens_base`) with them, so that neither the reset's
   * settlement nor a later charge of late usage bills them to the reset's run (migrations 0010 and
   * 0020). While the reset waits on the host they are not projected at all (`usageGate`): refused,
   * they are the run's own (its settlement, or the late charge of a completed run, takes them).
   */
  private attributes(workflowId: string, rows: LogRowOf<"attribute">[]): D1PreparedStatement {
    const totals = aggregate(rows.map((r) => r.data.attribute));
    const replaced = rows.filter((r) => this.log.wasReset(r.data.runId) || this.usageGate(r.data.runId) === "replaced");
    const replacedTokens = replaced.length > 0 ? aggregate(replaced.map((r) => r.data.attribute)).tokens.total : 0;
    const through = rows.reduce((newest, r) => Math.max(newest, r.seq), 0);
    return this.db
      .prepare(
        `UPDATE runs SET cost_total = cost_total + ?, tokens_input = tokens_input + ?, tokens_output = tokens_output + ?,
           tokens_total = tokens_total + ?, credit_tokens_base = credit_tokens_base + ?, http_requests = http_requests + ?,
           attributes_through_seq = ?
         WHERE temporal_workflow_id = ?`,
      )
      .bind(
        totals.cost.total,
        totals.tokens.input,
        totals.tokens.output,
        totals.tokens.total,
        replacedTokens,
        totals.httpRequests.total,
        through,
        workflowId,
      );
  }

  /**
   * The outcome. A continued-as-new run is not the end of the workflow: the row follows the new
   * run. `finish` says the statement is a real end (it returns whether the organization has
   * webhook endpoints). A final status settles the row's credits (trigger runs_credit_settle_on_final).
   */
  private finished(
    workflowId: string,
    row: LogRowOf<"run.finished">,
    now: string,
    /** When the run's `run.started` is in the same application (its UPDATE was left out). */
    startedAt: string | undefined,
  ): { statement: D1PreparedStatement; finish: boolean } {
    const data = row.data;
    if (!isFinish(row)) {
      return {
        statement: this.db
          .prepare("UPDATE runs SET temporal_run_id = ?, updated_at = ? WHERE temporal_workflow_id = ?")
          .bind(data.newRunId, now, workflowId),
        finish: false,
      };
    }
    const output = rowOutput(data.output);
    const errorDetails = rowErrorDetails(data.errorDetails);
    const statement = this.db
      .prepare(
        `UPDATE runs SET status = ?1, output = ?2, error = ?3, temporal_run_id = ?4, completed_at = ?5,
           started_at = COALESCE(started_at, ?6), updated_at = ?7, waiting_since = NULL, output_in_log = ?9, error_details = ?10
         WHERE temporal_workflow_id = ?8
         RETURNING EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.organization_id = runs.organization_id AND e.deleted_at IS NULL) AS has_webhooks`,
      )
      .bind(
        data.status,
        output.json,
        rowError(data.error),
        data.runId,
        row.at,
        startedAt ?? row.at,
        now,
        workflowId,
        output.inLog ? 1 : 0,
        errorDetails && JSON.stringify(errorDetails),
      );
    return { statement, finish: true };
  }
}

/**
 * One step_runs row per attempt of each Temporal run (a reset's or a continue-as-new's run repeats
 * the earlier run's activity ids; it gets rows of its own). A later state never goes back to
 * `running` (the `started` push of an attempt may arrive after its end). Exported for the
 * migration tests (a row written before migration 0011 is found by its key, whatever its id).
 */
export async function stepRunStatement(db: D1Database, workflowId: string, step: MergedStep): Promise<D1PreparedStatement> {
  // Outputs too large for the row stay in the log (`outputs_in_log`), as a run's own can. Outputs
  // the host left out of the step event (`outputsOmitted`) are marked the same way: the log has
  // none for them, and the detail answers such an attempt `outputsOmitted` (detail.ts).
  const outputs = step.outputsOmitted ? { json: null, inLog: true } : rowOutput(step.outputs);
  return db
    .prepare(
      `INSERT INTO step_runs (id, run_id, organization_id, temporal_run_id, step_id, step_name, attempt, status, outputs, error, created_at, updated_at, outputs_in_log)
       SELECT ?1, r.id, r.organization_id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12 FROM runs r WHERE r.temporal_workflow_id = ?11
       ON CONFLICT (run_id, temporal_run_id, step_id, attempt) DO UPDATE SET
         status = CASE WHEN excluded.status = 'running' THEN step_runs.status ELSE excluded.status END,
         outputs = CASE WHEN excluded.outputs_in_log = 1 THEN NULL ELSE COALESCE(excluded.outputs, step_runs.outputs) END,
         outputs_in_log = CASE WHEN excluded.outputs_in_log = 1 THEN 1 WHEN excluded.outputs IS NOT NULL THEN 0 ELSE step_runs.outputs_in_log END,
         error = COALESCE(excluded.error, step_runs.error),
         created_at = MIN(step_runs.created_at, excluded.created_at),
         updated_at = MAX(step_runs.updated_at, excluded.updated_at)`,
    )
    .bind(
      await stepRunId(workflowId, step.runId, step.activityId, step.attempt),
      step.runId,
      step.activityId,
      step.stepName,
      step.attempt,
      step.status,
      outputs.json,
      rowError(step.error),
      step.firstAt,
      step.lastAt,
      workflowId,
      outputs.inLog ? 1 : 0,
    );
}

/** How many of `queue`'s first rows one batch takes: at most MAX_ROWS_PER_BATCH, within PROJECTION_BATCH_MAX_CHARS unless the first alone is past it. */
function batchSize(queue: readonly UnprojectedRow[]): number {
  let chars = 0;
  let size = 0;
  for (const row of queue) {
    chars += row.chars;
    if (size === MAX_ROWS_PER_BATCH || (size > 0 && chars > PROJECTION_BATCH_MAX_CHARS)) break;
    size++;
  }
  return size;
}

const stepKey = (step: Pick<MergedStep, "runId" | "activityId" | "attempt">) =>
  `${step.runId}\u0000${step.activityId}\u0000${step.attempt}`;

/** A real end of the run (not a continue-as-new, which the row follows to the new run). */
function isFinish(row: LogRowOf<"run.finished">): boolean {
  return !(row.data.status === "continued_as_new" && row.data.newRunId);
}

export interface MergedStep {
  /** The log rows merged into it. */
  seqs: number[];
  /** The Temporal run of the attempt. */
  runId: string;
  activityId: string;
  attempt: number;
  stepName: string | null;
  status: "running" | "completed" | "failed";
  outputs: unknown;
  /** The host left the attempt's outputs out of its step event (too large: `outputsOmitted`). */
  outputsOmitted?: boolean;
  error: string | null;
  firstAt: string;
  lastAt: string;
}

/** The step rows of one application, one per attempt of each Temporal run: what D1's upsert would end with after each in turn. */
function mergeSteps(rows: readonly LogRow[]): MergedStep[] {
  const steps = new Map<string, MergedStep>();
  for (const row of rows) {
    if (row.type !== "step") continue;
    const d = row.data;
    const attempt = d.attempt || 1;
    const key = stepKey({ runId: d.runId, activityId: d.activityId, attempt });
    const state = d.state === "completed" || d.state === "failed" ? d.state : "running";
    const seen = steps.get(key);
    if (!seen) {
      steps.set(key, {
        seqs: [row.seq],
        runId: d.runId,
        activityId: d.activityId,
        attempt,
        stepName: d.stepName ?? null,
        status: state,
        outputs: d.outputs,
        outputsOmitted: d.outputsOmitted === true,
        error: d.error ?? null,
        firstAt: row.at,
        lastAt: row.at,
      });
      continue;
    }
    seen.seqs.push(row.seq);
    if (state !== "running") seen.status = state;
    if (d.outputs !== undefined && d.outputs !== null) {
      seen.outputs = d.outputs;
      seen.outputsOmitted = false;
    }
    if (d.outputsOmitted) {
      seen.outputs = undefined;
      seen.outputsOmitted = true;
    }
    if (d.error !== undefined) seen.error = d.error;
    seen.stepName ??= d.stepName ?? null;
    if (row.at < seen.firstAt) seen.firstAt = row.at;
    if (row.at > seen.lastAt) seen.lastAt = row.at;
  }
  return [...steps.values()];
}
