/**
 * RunStarter: the start of a run, done by the run's RunStream DO next to D1 and the host.
 *
 * The Worker makes one call into the home region (RunStream.start); everything a start needs
 * happens here: the catalog read and input check, the credit hold, the `scheduled` run row, and
 * the host start with the first log entry. See docs/start-path.md.
 *
 * Durability: a start is *accepted* when its row is written and its outbox row is in this DO's
 * storage. From then on it always runs, exactly once: if the host's answer does not come (timeout,
 * lost connection, host or Temporal down), the caller is told the run is accepted (`runId: null`,
 * status `scheduled`) and the alarm retries the start under the same workflow id and accept id
 * (the run UUID, in the workflow's memo) until Temporal confirms it; the host answers a repeated
 * start with the run the earlier attempt created, so a lost answer never starts a second run. A
 * start refused before acceptance (validation, credits, a workflow id in use) or refused for
 * certain by the host (it answered 4xx: nothing was started) is undone and reported as failed.
 */
import { acceptRunWithHold, undoAcceptedRunStatement } from "../../src/db/credits.ts";
import { isUniqueViolation } from "../../src/db/client.ts";
import { findPromptWorkflow } from "../../src/db/prompt-workflows.ts";
import type { PromptDefinition } from "../../src/db/schema.ts";
import { ApiError, type ErrorCode, type Issue } from "../../src/errors.ts";
import { HostClient, HostRefusedError } from "../../src/host-client.ts";
import type { StartRunRequest } from "../../src/shared/host-api.ts";
import type { RunStatus } from "../../src/shared/run-status.ts";
import { positiveNumberVar } from "../../src/shared/positive-number-var.ts";
import { DEFAULT_MAX_OPEN_RUNS_PER_ORGANIZATION, START_ATTEMPT_TIMEOUT_MS } from "./constants.ts";
import type { IdempotencyRequest } from "../../src/services/idempotency.ts";
import { claimIdempotencyKey, releaseStatement } from "../../src/services/idempotency.ts";

/** Storage schema version of this module's table (bump with a migration step when it changes). */
export const RUN_STARTER_SCHEMA_VERSION = 1;
/** First wait before the outbox retries a start; doubles per attempt up to the maximum. */
export const START_RETRY_BASE_MS = 1_000;
export const START_RETRY_MAX_MS = 30_000;

/** What the edge decided (auth, caller's ids) plus what to start; the rest is decided here. */
export interface StartCommand {
  organizationId: string;
  /** Temporal workflow id; this DO's name. */
  workflowId: string;
  /** Our run id (the D1 row's id) and the start's accept id. */
  runUuid: string;
  /** Resolves the catalog entry and checks the input (throws ApiError for a 4xx). */
  target: StartTarget;
  /** The request's `Idempotency-Key` (src/middleware/idempotency): claimed here, before the hold. */
  idempotency?: IdempotencyRequest;
}

export type StartTarget =
  | { kind: "code"; by: { name: string } | { id: string }; input: unknown; envs?: Record<string, string> }
  | { kind: "prompt"; promptWorkflowId: string; body: unknown };

/** What a target resolves to: the row's fields and what the host starts. */
export interface PreparedStart {
  catalogId: string;
  workflowName: string;
  input: unknown;
  creditHold: number;
  envNames: string[] | null;
  host: Omit<StartRunRequest, "workflowId" | "acceptId" | "retry">;
  prompt?: PromptDefinition;
}

export interface StartedRunInfo {
  workflowId: string;
  /** null while the run is accepted but Temporal has not confirmed it yet. */
  runId: string | null;
  status: RunStatus;
  /** Our run id (UUID). */
  id: string;
  prompt?: PromptDefinition;
}

export interface SerializedError {
  code: ErrorCode;
  message: string;
  issues?: Issue[];
  headers?: Record<string, string>;
  /** The run the error concerns (Output's envelope names it). */
  workflowId?: string;
}

/** `replayed`: the Idempotency-Key named an earlier start; `started` is that run (in another DO). */
export type StartReply = { ok: true; started: StartedRunInfo; replayed?: boolean } | { ok: false; error: SerializedError };

/** A workflow id names one run, ever: a start under a taken id is refused before acceptance. */
function workflowIdInUse(workflowId: string): StartReply {
  return { ok: false, error: { code: "workflow_id_in_use", message: `a run with workflowId "${workflowId}" already exists`, workflowId } };
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof ApiError)
    return { code: err.code, message: err.message, issues: err.issues, headers: err.headers, workflowId: err.workflowId };
  throw err;
}

/** What the DO class lends the starter. */
export interface RunStarterDeps {
  sql: SqlStorage;
  /** Whether the DO's schema exists yet: a new DO has no start to read, and a refused start writes none. */
  hasSchema(): boolean;
  env: Env;
  storage: DurableObjectStorage;
  /** Resolves a start target against the catalog (src/services). */
  prepare(env: Env, organizationId: string, target: StartTarget): Promise<PreparedStart>;
  /** Records `run.started` in the run's log (and so moves the D1 row to running). */
  recordStarted(workflowId: string, runId: string): Promise<void>;
}

interface OutboxRow extends Record<string, SqlStorageValue> {
  accept_id: string;
  workflow_id: string;
  organization_id: string;
  state: string;
  run_id: string | null;
  request: string | null;
  attempts: number;
  next_attempt_at: number;
  credit_hold: number;
}

type AttemptOutcome = { kind: "started"; runId: string } | { kind: "refused"; error: ApiError } | { kind: "unknown"; error: unknown };

/** The start outbox's table: part of the DO's versioned schema (storage.ts), not created per wake. */
export const RUN_START_TABLE = `CREATE TABLE IF NOT EXISTS run_start (
  accept_id TEXT PRIMARY KEY,
  workflow_id TEXT NOT NULL,
  organization_id TEXT NOT NULL,
  state TEXT NOT NULL,            -- pending | started | failed
  run_id TEXT,
  request TEXT,                   -- the host start request, kept only while pending (it may carry envs)
  attempts INTEGER NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  credit_hold INTEGER NOT NULL,
  schema_version INTEGER NOT NULL DEFAULT ${RUN_STARTER_SCHEMA_VERSION}
)`;

export class RunStarter {
  constructor(private readonly deps: RunStarterDeps) {}

  private row(): OutboxRow | undefined {
    // Reading `sql` creates a new DO's schema: a start refused before acceptance (unknown workflow,
    // bad input, no credits) would leave a DO with tables and nothing in them, one per refusal.
    if (!this.deps.hasSchema()) return undefined;
    return this.deps.sql.exec<OutboxRow>("SELECT * FROM run_start LIMIT 1").toArray()[0];
  }

  /** A start accepted here and not yet confirmed by Temporal. */
  hasPending(): boolean {
    return this.row()?.state === "pending";
  }

  /** When the pending start's next attempt is due (ms since the epoch), or null when no start is pending. */
  pendingAttemptAt(): number | null {
    const row = this.row();
    return row?.state === "pending" ? row.next_attempt_at : null;
  }

  /**
   * Starts a run. With an Idempotency-Key, the key is claimed first (one D1 statement, here next
   * to D1, so it adds no round trip of its own): a replay answers with the earlier run (which lives
   * in its own DO), and a start refused before acceptance gives the key back.
   */
  async start(command: StartCommand): Promise<StartReply> {
    const key = command.idempotency;
    if (!key) return this.startClaimed(command);
    const { env } = this.deps;
    let replay: Awaited<ReturnType<typeof claimIdempotencyKey>>;
    try {
      replay = await claimIdempotencyKey(
        env.DB,
        command.organizationId,
        { ...key, replayed: false },
        { workflowId: command.workflowId, runUuid: command.runUuid },
      );
    } catch (err) {
      return { ok: false, error: serializeError(err) };
    }
    if (replay) {
      // A prompt run's caller needs its definition to shape the answer (its `webSearch` flag). The
      // replay answers with the first run even if the workflow has since been unpublished or its
      // variables changed, so the definition is read as it is, not checked again like a start.
      let prompt: PromptDefinition | undefined;
      if (command.target.kind === "prompt") {
        const workflow = await findPromptWorkflow(env.DB, command.target.promptWorkflowId);
        if (!workflow?.prompt || workflow.organizationId !== command.organizationId)
          return {
            ok: false,
            error: serializeError(new ApiError("workflow_not_found", `no workflow "${command.target.promptWorkflowId}"`)),
          };
        prompt = workflow.prompt;
      }
      return { ok: true, replayed: true, started: { ...replay, ...(prompt ? { prompt } : {}) } };
    }
    const release = () => releaseStatement(env.DB, command.organizationId, key.key, command.runUuid).run();
    let reply: StartReply;
    try {
      reply = await this.startClaimed(command);
    } catch (err) {
      await release();
      throw err;
    }
    if (!reply.ok) await release();
    return reply;
  }

  /** Starts a run: everything before acceptance may refuse it; after acceptance it runs. */
  private async startClaimed(command: StartCommand): Promise<StartReply> {
    const existing = this.row();
    // The same start again (the Worker retried a call whose answer it lost): same answer.
    if (existing?.accept_id === command.runUuid) return { ok: true, started: this.info(existing) };
    const { env } = this.deps;
    let prepared: PreparedStart;
    try {
      // The catalog entry comes from the isolate cache (src/db/workflows.ts) unless it is not there yet.
      prepared = await this.deps.prepare(env, command.organizationId, command.target);
    } catch (err) {
      return { ok: false, error: serializeError(err) };
    }
    // The credit check, the hold and the row: one statement, all or nothing (src/db/credits.ts).
    let hold: Awaited<ReturnType<typeof acceptRunWithHold>>;
    try {
      hold = await acceptRunWithHold(
        env.DB,
        {
          id: command.runUuid,
          organizationId: command.organizationId,
          workflowId: prepared.catalogId,
          workflowName: prepared.workflowName,
          temporalWorkflowId: command.workflowId,
          input: prepared.input,
          envNames: prepared.envNames,
        },
        prepared.creditHold,
        positiveNumberVar(env.MAX_OPEN_RUNS_PER_ORGANIZATION, DEFAULT_MAX_OPEN_RUNS_PER_ORGANIZATION),
      );
    } catch (err) {
      // A taken workflow id wrote nothing (the statement and its trigger are one transaction).
      // The id is checked here, last: only a start that would otherwise be accepted (known
      // workflow, good input, credits, room among the open runs) learns that the id is taken, so
      // probing which ids other organizations use costs a real, charged start per free id. (An id
      // this DO holds has its D1 row but in one case, checked below: a refused start's row undone
      // in D1 before the DO could forget its own.)
      if (isUniqueViolation(err)) return workflowIdInUse(command.workflowId);
      // Unknown outcome: make sure no row or hold is left behind before reporting the error.
      await undoAcceptedRunStatement(env.DB, command.runUuid)
        .run()
        .catch(() => undefined);
      throw err;
    }
    if (!hold.ok && hold.reason === "open_runs") {
      return {
        ok: false,
        error: {
          code: "too_many_open_runs",
          message: `the organization has ${hold.limit} runs that have not ended, the most it may have open at once; start more once some end, or stop some`,
        },
      };
    }
    if (!hold.ok) {
      return {
        ok: false,
        error: {
          code: "insufficient_credits",
          message: `this run needs ${prepared.creditHold} credits available and the organization has ${hold.available}; add credits to continue`,
        },
      };
    }
    // A start row of another accept id is still here: its run was refused and its D1 row undone,
    // but this DO went away before it forgot the row. The id stays this DO's (as before that row's
    // D1 row went): undo this acceptance, as a taken id's unique violation would have.
    if (this.row()) {
      await undoAcceptedRunStatement(env.DB, command.runUuid).run();
      return workflowIdInUse(command.workflowId);
    }
    const creditHold = hold.creditHold;
    const request: StartRunRequest = { ...prepared.host, workflowId: command.workflowId, acceptId: command.runUuid };
    // Accepted: from here on the run always runs. The alarm is the safety net if this DO goes away mid-attempt.
    this.deps.sql.exec(
      `INSERT INTO run_start (accept_id, workflow_id, organization_id, state, request, attempts, next_attempt_at, credit_hold)
       VALUES (?, ?, ?, 'pending', ?, 1, ?, ?)`,
      command.runUuid,
      command.workflowId,
      command.organizationId,
      JSON.stringify(request),
      Date.now() + START_ATTEMPT_TIMEOUT_MS + START_RETRY_BASE_MS,
      creditHold,
    );
    // (A fresh start: this DO holds no other alarm yet.)
    await this.deps.storage.setAlarm(Date.now() + START_ATTEMPT_TIMEOUT_MS + START_RETRY_BASE_MS);

    const outcome = await this.attempt(request);
    if (outcome.kind === "refused") {
      // The host answered that it started nothing: undo everything, report the refusal.
      await undoAcceptedRunStatement(env.DB, command.runUuid).run();
      this.deps.sql.exec("DELETE FROM run_start WHERE accept_id = ?", command.runUuid);
      return { ok: false, error: serializeError(outcome.error) };
    }
    if (outcome.kind === "started") await this.confirm(outcome.runId);
    else this.logRetry(command.workflowId, outcome.error, 1);
    return { ok: true, started: { ...this.info(this.row()!), prompt: prepared.prompt } };
  }

  /** The alarm: one more attempt for a pending start. Returns true when a start is still pending. */
  async retryPending(): Promise<boolean> {
    const row = this.row();
    if (row?.state !== "pending") return false;
    if (row.next_attempt_at > Date.now()) {
      await this.deps.storage.setAlarm(row.next_attempt_at);
      return true;
    }
    const attempts = row.attempts + 1;
    // The pause after this attempt's time limit: 1 s after the first attempt, 2 s after the second, 4 s ...
    const wait = Math.min(START_RETRY_MAX_MS, START_RETRY_BASE_MS * 2 ** Math.min(attempts - 1, 10));
    this.deps.sql.exec(
      "UPDATE run_start SET attempts = ?, next_attempt_at = ? WHERE accept_id = ?",
      attempts,
      Date.now() + START_ATTEMPT_TIMEOUT_MS + wait,
      row.accept_id,
    );
    await this.deps.storage.setAlarm(Date.now() + START_ATTEMPT_TIMEOUT_MS + wait);
    const request = JSON.parse(row.request!) as StartRunRequest;
    const outcome = await this.attempt({ ...request, retry: true });
    if (outcome.kind === "started") {
      await this.confirm(outcome.runId);
      return false;
    }
    if (outcome.kind === "refused") {
      // Accepted, then refused for good (e.g. the workflow left the host's catalog): the run failed, on record.
      this.deps.sql.exec("UPDATE run_start SET state = 'failed', request = NULL WHERE accept_id = ?", row.accept_id);
      await this.recordFailed(row.workflow_id, `the run could not be started: ${outcome.error.message}`);
      return false;
    }
    this.logRetry(row.workflow_id, outcome.error, attempts);
    return true;
  }

  private async attempt(request: StartRunRequest): Promise<AttemptOutcome> {
    try {
      const { runId } = await new HostClient(this.deps.env).start(request, START_ATTEMPT_TIMEOUT_MS);
      return { kind: "started", runId };
    } catch (err) {
      // A 4xx answer from the host means it started nothing (a conflict under our own accept id is answered with the run).
      if (err instanceof HostRefusedError) return { kind: "refused", error: err };
      return { kind: "unknown", error: err };
    }
  }

  private async confirm(runId: string): Promise<void> {
    const row = this.row()!;
    this.deps.sql.exec("UPDATE run_start SET state = 'started', run_id = ?, request = NULL WHERE accept_id = ?", runId, row.accept_id);
    await this.deps.recordStarted(row.workflow_id, runId);
  }

  /**
   * The row ends `failed` with the reason; the final status releases its credit hold, charged
   * nothing (trigger runs_credit_settle_on_final).
   */
  private async recordFailed(workflowId: string, message: string): Promise<void> {
    const { DB } = this.deps.env;
    const now = new Date().toISOString();
    await DB.prepare(
      "UPDATE runs SET status = 'failed', error = ?, completed_at = ?, updated_at = ? WHERE temporal_workflow_id = ? AND status = 'scheduled'",
    )
      .bind(message, now, now, workflowId)
      .run();
  }

  private info(row: OutboxRow): StartedRunInfo {
    const status: RunStatus = row.state === "started" ? "running" : row.state === "failed" ? "failed" : "scheduled";
    return { workflowId: row.workflow_id, runId: row.run_id, status, id: row.accept_id };
  }

  private logRetry(workflowId: string, error: unknown, attempts: number): void {
    console.warn(
      JSON.stringify({
        level: "warn",
        message: "run start not confirmed by the host; the outbox retries it",
        workflowId,
        attempts,
        error: String(error),
      }),
    );
  }
}
