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
 *
 * Between the D1 row and the outbox row the DO may go away (evicted, reset by a deploy, out of
 * memory): the caller then gets an error, so the run must not run, yet D1 holds its `scheduled`
 * row and credit hold, and a caller-chosen workflow id would stay taken. So before the D1 row is
 * written, an *acceptance marker* (the accept id, its organization and Idempotency-Key) goes into
 * this DO's key-value storage with the alarm armed; the outbox row replaces it in one write. A
 * marker that outlives its start (not in flight in this instance, older than ACCEPTANCE_GRACE_MS)
 * is undone by the alarm or by the next start: D1 row and hold removed, key given back.
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
import { claimIdempotencyKey, idempotencyKeyInUse, releaseStatement } from "../../src/services/idempotency.ts";
import type { NeverStartedRun } from "./webhook-outbox.ts";

/** Storage schema version of this module's table (bump with a migration step when it changes). */
export const RUN_STARTER_SCHEMA_VERSION = 1;
/** First wait before the outbox retries a start; doubles per attempt up to the maximum. */
export const START_RETRY_BASE_MS = 1_000;
export const START_RETRY_MAX_MS = 30_000;
/**
 * How long an acceptance marker of a start no longer in flight is left alone before it is undone:
 * the accepting D1 statement of an instance that went away could in principle still be on its way,
 * and an undo that ran before it landed would leave its row behind.
 */
export const ACCEPTANCE_GRACE_MS = 10_000;
/**
 * An undo of an abandoned acceptance that D1 refused (an outage) is tried again after this, doubled
 * per failure up to ACCEPTANCE_UNDO_RETRY_MAX_MS: by the DO's own alarm, not by the runtime's retries
 * of a failed alarm, which stop after six (about two minutes) and would leave the row and its hold for good.
 */
export const ACCEPTANCE_UNDO_RETRY_BASE_MS = ACCEPTANCE_GRACE_MS;
export const ACCEPTANCE_UNDO_RETRY_MAX_MS = 5 * 60_000;
/** Key-value storage prefix of acceptance markers (`<prefix><accept id>`): KV, so that a refused start creates no tables. */
export const ACCEPTANCE_MARKER_PREFIX = "run-start:accepting:";

/** What undoing an abandoned acceptance needs. Plain data: it lives in the DO's key-value storage. */
export interface AcceptanceMarker {
  organizationId: string;
  /** The Idempotency-Key claimed for the start, given back with the undo. */
  idempotencyKey: string | null;
  /** When the marker was written (ms since the epoch). */
  at: number;
}

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

export type StartOutcome = { state: "accepted"; started: StartedRunInfo } | { state: "starting" } | { state: "not_accepted" };

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

/** Runs an organization may have open at once (a start, or a reset of an ended run, past it is 429). */
export function maxOpenRuns(env: Env): number {
  return positiveNumberVar(env.MAX_OPEN_RUNS_PER_ORGANIZATION, DEFAULT_MAX_OPEN_RUNS_PER_ORGANIZATION);
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
  /** Asks another run's DO whether its start under `acceptId` is settled (`isSettledStart` there). */
  isSettledStartIn(workflowId: string, acceptId: string): Promise<boolean>;
  /** Records `run.started` in the run's log (and so moves the D1 row to running). */
  recordStarted(workflowId: string, runId: string): Promise<void>;
  /** The run ended `failed` before it started (its start refused for good): its webhook is due (webhook-outbox.ts). */
  noteNeverStarted(run: NeverStartedRun): void;
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
  /** Accept ids whose start call is under way in this instance: their markers are not abandoned, and startOutcome says so. */
  private readonly inFlight = new Set<string>();
  /**
   * The last look found no marker and this instance wrote none since: `pendingAttemptAt`, asked
   * after every change to the log, skips the storage read. (Only this instance writes markers.)
   */
  private noMarkers = false;
  /**
   * Undos D1 refused, by accept id: how many times, and when the alarm tries again. In memory: a
   * new instance tries at once, then backs off again.
   */
  private readonly undoFailures = new Map<string, { failures: number; retryAt: number }>();

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

  /**
   * When the start outbox next needs the alarm (ms since the epoch): the pending start's next
   * attempt, or an acceptance marker's undo; null when neither is waiting.
   */
  pendingAttemptAt(): number | null {
    const row = this.row();
    const now = Date.now();
    const due = this.markers().map(([acceptId, marker]) => this.markerDeadline(acceptId, marker, now));
    if (row?.state === "pending") due.push(row.next_attempt_at);
    return due.length === 0 ? null : Math.min(...due);
  }

  /**
   * Starts a run. With an Idempotency-Key, the key is claimed first (one D1 statement, here next
   * to D1, so it adds no round trip of its own): a replay answers with the earlier run (which lives
   * in its own DO), and a start refused before acceptance gives the key back.
   */
  async start(command: StartCommand): Promise<StartReply> {
    // In flight from its first await (the key's claim, the catalog), so that a Worker that lost this
    // call and asks what became of it (startOutcome) hears "still starting", not "nothing here".
    this.inFlight.add(command.runUuid);
    try {
      return await this.startInFlight(command);
    } finally {
      this.inFlight.delete(command.runUuid);
    }
  }

  private async startInFlight(command: StartCommand): Promise<StartReply> {
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
      // variables changed, so the definition is read as it is, not checked again like a start; and
      // the flag is the one the first run started with (runs.prompt_web_search), so an edit since
      // does not change the answer (a row from before that column: the definition's).
      let prompt: PromptDefinition | undefined;
      if (command.target.kind === "prompt") {
        const workflow = await findPromptWorkflow(env.DB, command.target.promptWorkflowId);
        if (!workflow?.prompt || workflow.organizationId !== command.organizationId)
          return {
            ok: false,
            error: serializeError(new ApiError("workflow_not_found", `no workflow "${command.target.promptWorkflowId}"`)),
          };
        prompt = { ...workflow.prompt, webSearch: replay.promptWebSearch ?? workflow.prompt.webSearch };
      }
      // A run accepted but not confirmed by Temporal is replayed only once its start is settled:
      // until then the first request may yet be refused, or its DO have gone away half-way.
      if (replay.status === "scheduled" && replay.runId === null) {
        const settled =
          replay.workflowId === command.workflowId
            ? this.isSettledStart(replay.id)
            : await this.deps.isSettledStartIn(replay.workflowId, replay.id);
        if (!settled) return { ok: false, error: serializeError(idempotencyKeyInUse()) };
      }
      const { promptWebSearch: _flag, ...replayed } = replay;
      return { ok: true, replayed: true, started: { ...replayed, ...(prompt ? { prompt } : {}) } };
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
    // An earlier start under this id that died half-way holds the id in D1 until it is undone.
    await this.undoAbandonedAcceptances();
    return this.accept(command, prepared);
  }

  /** Acceptance: the marker, the D1 row with its hold, then the outbox row in place of the marker. */
  private async accept(command: StartCommand, prepared: PreparedStart): Promise<StartReply> {
    const { env } = this.deps;
    await this.markAccepting(command.runUuid, { organizationId: command.organizationId, idempotencyKey: command.idempotency?.key ?? null });
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
          ...(prepared.prompt ? { prompt: { hold: prepared.creditHold, webSearch: prepared.prompt.webSearch } } : {}),
        },
        prepared.creditHold,
        maxOpenRuns(env),
      );
    } catch (err) {
      // A taken workflow id wrote nothing (the statement and its trigger are one transaction).
      // The id is checked here, last: only a start that would otherwise be accepted (known
      // workflow, good input, credits, room among the open runs) learns that the id is taken, so
      // probing which ids other organizations use costs a real, charged start per free id. (An id
      // this DO holds has its D1 row but in one case, checked below: a refused start's row undone
      // in D1 before the DO could forget its own.)
      if (isUniqueViolation(err)) {
        this.unmark(command.runUuid);
        return workflowIdInUse(command.workflowId);
      }
      // Unknown outcome: make sure no row or hold is left behind before reporting the error (if
      // the undo fails too, the marker stays and the alarm undoes it).
      const undone = await undoAcceptedRunStatement(env.DB, command.runUuid)
        .run()
        .then(
          () => true,
          () => false,
        );
      if (undone) this.unmark(command.runUuid);
      throw err;
    }
    if (!hold.ok) {
      this.unmark(command.runUuid);
      if (hold.reason === "open_runs")
        return {
          ok: false,
          error: {
            code: "too_many_open_runs",
            message: `the organization has ${hold.limit} runs that have not ended, the most it may have open at once; start more once some end, or stop some`,
          },
        };
      return {
        ok: false,
        error: {
          code: "insufficient_credits",
          message: `this run needs ${prepared.creditHold} credits available and the organization has ${hold.available}; add credits to continue`,
        },
      };
    }
    // A start row of another accept id is still here: its run was refused and its D1 row undone,
    // but this DO (run by code before acceptance markers) went away before it forgot the row. The
    // id stays this DO's (as before that row's D1 row went): undo this acceptance, as a taken id's
    // unique violation would have.
    if (this.row()) {
      await undoAcceptedRunStatement(env.DB, command.runUuid).run();
      this.unmark(command.runUuid);
      return workflowIdInUse(command.workflowId);
    }
    const creditHold = hold.creditHold;
    const request: StartRunRequest = { ...prepared.host, workflowId: command.workflowId, acceptId: command.runUuid };
    const firstRetryAt = Date.now() + START_ATTEMPT_TIMEOUT_MS + START_RETRY_BASE_MS;
    // Accepted: from here on the run always runs. The outbox row takes the marker's place in one
    // write, and the alarm is the safety net if this DO goes away mid-attempt.
    this.deps.storage.transactionSync(() => {
      this.deps.sql.exec(
        `INSERT INTO run_start (accept_id, workflow_id, organization_id, state, request, attempts, next_attempt_at, credit_hold)
         VALUES (?, ?, ?, 'pending', ?, 1, ?, ?)`,
        command.runUuid,
        command.workflowId,
        command.organizationId,
        JSON.stringify(request),
        firstRetryAt,
        creditHold,
      );
      this.unmark(command.runUuid);
    });
    await this.alarmBy(firstRetryAt);

    const outcome = await this.attempt(request);
    if (outcome.kind === "refused") {
      // The host answered that it started nothing: undo everything, report the refusal. The marker
      // comes back in the outbox row's place first, so a DO that goes away mid-undo is undone by the alarm.
      this.deps.storage.transactionSync(() => {
        this.mark(command.runUuid, { organizationId: command.organizationId, idempotencyKey: command.idempotency?.key ?? null });
        this.deps.sql.exec("DELETE FROM run_start WHERE accept_id = ?", command.runUuid);
      });
      await undoAcceptedRunStatement(env.DB, command.runUuid).run();
      this.unmark(command.runUuid);
      return { ok: false, error: serializeError(outcome.error) };
    }
    if (outcome.kind === "started") await this.confirm(outcome.runId);
    else this.logRetry(command.workflowId, outcome.error, 1);
    return { ok: true, started: { ...this.info(this.row()!), prompt: prepared.prompt } };
  }

  // ------------------------------------------------------------------ acceptance markers (see the header)

  private mark(acceptId: string, marker: Omit<AcceptanceMarker, "at">): number {
    const at = Date.now();
    this.deps.storage.kv.put<AcceptanceMarker>(ACCEPTANCE_MARKER_PREFIX + acceptId, { ...marker, at });
    this.noMarkers = false;
    return at;
  }

  private unmark(acceptId: string): void {
    this.deps.storage.kv.delete(ACCEPTANCE_MARKER_PREFIX + acceptId);
  }

  /** The marker goes in before the D1 row, with the alarm set to undo it should this instance go away. */
  private async markAccepting(acceptId: string, marker: Omit<AcceptanceMarker, "at">): Promise<void> {
    const at = this.mark(acceptId, marker);
    await this.alarmBy(at + ACCEPTANCE_GRACE_MS);
  }

  private markers(): Array<[acceptId: string, marker: AcceptanceMarker]> {
    if (this.noMarkers) return [];
    const found = [...this.deps.storage.kv.list<AcceptanceMarker>({ prefix: ACCEPTANCE_MARKER_PREFIX })].map(
      ([key, marker]): [string, AcceptanceMarker] => [key.slice(ACCEPTANCE_MARKER_PREFIX.length), marker],
    );
    this.noMarkers = found.length === 0;
    return found;
  }

  /** When a marker next needs the alarm: its grace after it was written, or a grace from now while its start is still in flight. */
  private markerDeadline(acceptId: string, marker: AcceptanceMarker, now: number): number {
    if (this.inFlight.has(acceptId)) return now + ACCEPTANCE_GRACE_MS;
    return Math.max(marker.at + ACCEPTANCE_GRACE_MS, this.undoFailures.get(acceptId)?.retryAt ?? 0);
  }

  /** Sets the alarm for `at` unless it is set for earlier already. */
  private async alarmBy(at: number): Promise<void> {
    const set = await this.deps.storage.getAlarm();
    if (set === null || set > at) await this.deps.storage.setAlarm(at);
  }

  /**
   * Undoes the acceptances that an instance which went away left half-done (see the header): the
   * D1 row and its hold removed (only while `scheduled`), the Idempotency-Key given back, the
   * marker deleted. Markers of starts in flight here, or younger than their grace, wait for the
   * alarm, which is armed for them. An undo D1 refuses is tried again later, backed off
   * (ACCEPTANCE_UNDO_RETRY_BASE_MS, doubling): the alarm is set for it before the failure is thrown.
   */
  async undoAbandonedAcceptances(): Promise<void> {
    const { env } = this.deps;
    const now = Date.now();
    let next: number | null = null;
    let failure: unknown = null;
    for (const [acceptId, marker] of this.markers()) {
      const deadline = this.markerDeadline(acceptId, marker, now);
      if (deadline > now) {
        next = Math.min(next ?? deadline, deadline);
        continue;
      }
      try {
        await undoAcceptedRunStatement(env.DB, acceptId).run();
        if (marker.idempotencyKey !== null) await releaseStatement(env.DB, marker.organizationId, marker.idempotencyKey, acceptId).run();
      } catch (err) {
        const failures = (this.undoFailures.get(acceptId)?.failures ?? 0) + 1;
        const retryAt = now + Math.min(ACCEPTANCE_UNDO_RETRY_BASE_MS * 2 ** Math.min(failures - 1, 10), ACCEPTANCE_UNDO_RETRY_MAX_MS);
        this.undoFailures.set(acceptId, { failures, retryAt });
        next = Math.min(next ?? retryAt, retryAt);
        failure ??= err;
        continue;
      }
      this.undoFailures.delete(acceptId);
      this.unmark(acceptId);
      console.warn(
        JSON.stringify({
          level: "warn",
          message: "a start that did not finish accepting its run was undone",
          acceptId,
          markedAt: marker.at,
        }),
      );
    }
    if (next !== null) await this.alarmBy(next);
    if (failure !== null) throw failure;
  }

  /**
   * Whether the start under `acceptId` is settled here: its outbox row is here and no acceptance
   * or first attempt of it is under way, so it runs (or is recorded failed). Not settled: still
   * starting (it may yet be refused and undone), abandoned half-way (to be undone), or unknown.
   */
  isSettledStart(acceptId: string): boolean {
    return this.startOutcome(acceptId).state === "accepted";
  }

  /**
   * What became of a start whose caller lost the answer (its call into this DO failed on the way:
   * the connection lost, this DO reset by a deploy). `accepted`: its outbox row is here, so it runs
   * (or ended, as recorded). `starting`: still under way in this instance (its first host attempt):
   * ask again. `not_accepted`: nothing here, so it will not run: the call never arrived, the host
   * refused it and it was undone, or it was abandoned half-way, which the alarm undoes.
   */
  startOutcome(acceptId: string): StartOutcome {
    if (this.inFlight.has(acceptId)) return { state: "starting" };
    const row = this.row();
    if (row?.accept_id === acceptId) return { state: "accepted", started: this.info(row) };
    return { state: "not_accepted" };
  }

  /** Whether this DO has kept anything but acceptance markers: a DO with no schema accepted no run. */
  keepsRun(): boolean {
    return this.deps.hasSchema();
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
      // Accepted, then refused for good (e.g. the workflow left the host's catalog): the run failed,
      // on record. D1 first: should its write fail, the start stays pending and the alarm (set
      // above) asks again, where a `failed` outbox row would leave the D1 row scheduled for ever.
      const error = `the run could not be started: ${outcome.error.message}`;
      const { at, hasWebhooks } = await this.recordFailed(row.workflow_id, error);
      if (hasWebhooks) this.deps.noteNeverStarted({ workflowId: row.workflow_id, acceptId: row.accept_id, error, at });
      this.deps.sql.exec("UPDATE run_start SET state = 'failed', request = NULL WHERE accept_id = ?", row.accept_id);
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
   * nothing (trigger runs_credit_settle_on_final). Says whether the organization has webhook
   * endpoints (as the projection's finish does), or that it may: a row already `failed` (an
   * earlier try wrote it, then the DO went away) returns nothing.
   */
  private async recordFailed(workflowId: string, message: string): Promise<{ at: string; hasWebhooks: boolean }> {
    const { DB } = this.deps.env;
    const now = new Date().toISOString();
    const updated = await DB.prepare(
      `UPDATE runs SET status = 'failed', error = ?, completed_at = ?, updated_at = ? WHERE temporal_workflow_id = ? AND status = 'scheduled'
       RETURNING EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.organization_id = runs.organization_id AND e.deleted_at IS NULL) AS has_webhooks`,
    )
      .bind(message, now, now, workflowId)
      .first<{ has_webhooks: number }>();
    return { at: now, hasWebhooks: !updated || updated.has_webhooks > 0 };
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
