/**
 * RunLifecycle: what follows every change to the run's log, and every alarm. A change is appended
 * and broadcast to subscribers at once, then D1, the traces, the watchdog's alarm and the webhook
 * outbox are brought up to date, in that order (`settle`). The alarm does the same for what a
 * failure left behind, and asks Temporal about a run that went quiet. The questions that decide
 * when there is nothing left to do (finished, settled, ended) live here too.
 *
 * It reaches the DO's other parts through `parts()`, called only when a step needs one: the first
 * call makes a new DO's schema (storage.ts), so a push that push-admission.ts drops must not get
 * that far, and does not.
 */
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { runStartedEvent } from "../../src/shared/run-events.ts";
import { isTerminal } from "../../src/shared/run-status.ts";
import { META_KEYS } from "./constants.ts";
import type { EventLog } from "./event-log.ts";
import type { Subscribers } from "./fanout.ts";
import type { RecordResult, RunOutcome } from "./messages.ts";
import type { D1Projection, ProjectionResult } from "./projection.ts";
import type { PushAdmission } from "./push-admission.ts";
import type { ResetHolds } from "./reset-holds.ts";
import { type ResetMark, withReplacedRun } from "./reset-mark.ts";
import type { RunStarter } from "./run-starter.ts";
import type { Meta } from "./meta.ts";
import type { PushNonces } from "./storage.ts";
import type { TraceWriter } from "./traces.ts";
import { waitingFlip } from "./waiting.ts";
import type { Watchdog } from "./watchdog.ts";
import type { WebhookOutbox } from "./webhook-outbox.ts";

/** The parts a change or an alarm goes through. */
export interface LifecycleParts {
  meta: Meta;
  nonces: Pick<PushNonces, "claim">;
  log: Pick<
    EventLog,
    | "append"
    | "latestRunId"
    | "wasReset"
    | "finished"
    | "finishedRunIds"
    | "hasUnprojected"
    | "isComplete"
    | "loggedWaiting"
    | "historyCount"
    | "lastHistoryType"
    | "inFlight"
  >;
  projection: Pick<D1Projection, "apply">;
  traces: Pick<TraceWriter, "writeMissing" | "isMissing">;
  subscribers: Pick<Subscribers, "broadcast" | "releaseHeld" | "releaseRun">;
  watchdog: Pick<Watchdog, "heard" | "arm" | "forget" | "reconcile" | "lostOpenRun">;
  webhooks: Pick<WebhookOutbox, "arm" | "work">;
  resetMark: Pick<ResetMark, "noteAppended" | "get">;
  resets: Pick<ResetHolds, "resolveStale">;
}

export interface SettleOptions {
  /**
   * Return once D1 has the change, and write traces and arm the alarm after (a reader waiting
   * for a run's outcome needs the row, not the trace; the alarm retries a trace that fails).
   */
  tailLater?: boolean;
  /** Read the run's row back in the projection's batch (ProjectionResult.row). */
  readRow?: boolean;
}

export interface RunLifecycleDeps {
  admission: Pick<PushAdmission, "admits">;
  /** The start outbox: an alarm first retries a start Temporal has not confirmed (run-starter.ts). */
  starter: Pick<RunStarter, "retryPending" | "pendingAttemptAt" | "undoAbandonedAcceptances" | "keepsRun">;
  /** The DO's parts, over storage that has its schema (see the header). */
  parts(): LifecycleParts;
  /** New rows are in the log: readers waiting in the DO look again (log-waiters.ts). */
  appended(): void;
}

export class RunLifecycle {
  constructor(private readonly deps: RunLifecycleDeps) {}

  private get parts(): LifecycleParts {
    return this.deps.parts();
  }

  /**
   * Appends new events and sends them to subscribers (no await in between), then brings D1, the
   * traces and the watchdog up to date. `nonce` claims a signed push once. Events for a run the
   * edge never accepted (started directly in Temporal) are dropped, and nothing at all is written
   * (push-admission.ts): the answer says `dropped` so the host does not retry them.
   */
  async record(workflowId: string, events: RunEvent[], nonce?: { nonce: string; expiresAt: number }): Promise<RecordResult> {
    if (!(await this.deps.admission.admits(workflowId))) return { accepted: 0, duplicates: 0, dropped: true };
    return this.recordEvents(workflowId, events, { nonce });
  }

  /** The log entry is written before this returns; its D1 projection finishes after the answer (the watchdog retries a failed one). */
  async recordStarted(workflowId: string, runId: string): Promise<void> {
    void this.record(workflowId, [runStartedEvent(runId)]).catch((err) =>
      console.warn(
        JSON.stringify({
          level: "warn",
          message: "run.started projection failed; the watchdog retries it",
          workflowId,
          error: String(err),
        }),
      ),
    );
  }

  /** `record` without the push checks, for the DO's own events; `tailLater` and `readRow` as for `settle`. */
  async recordEvents(
    workflowId: string,
    events: RunEvent[],
    options: { nonce?: { nonce: string; expiresAt: number } } & SettleOptions = {},
  ): Promise<RecordResult & Pick<ProjectionResult, "row">> {
    const { nonce, ...settleOptions } = options;
    const { meta, log, nonces, subscribers, watchdog } = this.parts;
    if (nonce && !nonces.claim(nonce)) return { accepted: 0, duplicates: 0, replayed: true };
    meta.set(META_KEYS.workflowId, workflowId);
    const fresh = log.append(withReplacedRun(events, log, this.parts.resetMark.get()));
    // The latest run's waiting, when these events flipped it: appended in the same synchronous step,
    // so its seq follows theirs (waiting.ts). Looked at on every call, new events or not (a look at
    // the log's derived state): a run already waiting when its DO began to log such entries gets its
    // entry with the next push or read.
    const flip = waitingFlip(log, new Date().toISOString());
    if (flip) fresh.push(...log.append([flip]));
    this.parts.resetMark.noteAppended(fresh);
    if (fresh.length > 0) {
      watchdog.heard();
      subscribers.broadcast(fresh);
      // A reset's run.started: the replaced run's log-view subscribers follow the workflow to its run.
      if (fresh.some((row) => row.type === "run.started" && row.data.resetFromRunId)) subscribers.releaseHeld();
      this.deps.appended();
    }
    const projected = await this.settle(
      workflowId,
      fresh.some((r) => r.type === "history"),
      settleOptions,
    );
    return { accepted: fresh.length, duplicates: events.length - fresh.length, ...("row" in projected ? { row: projected.row } : {}) };
  }

  /**
   * D1, traces, then the alarm: what follows every change to the log (and every alarm); resolves
   * to what D1's projection did.
   */
  async settle(workflowId: string, newHistory: boolean, options: SettleOptions = {}): Promise<ProjectionResult> {
    const { tailLater = false, readRow = false } = options;
    let projected = false;
    try {
      const result = await this.parts.projection.apply(workflowId, newHistory, readRow);
      projected = true;
      return result;
    } finally {
      const tail = this.settleTail(workflowId, projected);
      if (tailLater)
        tail.catch((err) =>
          console.warn(JSON.stringify({ level: "warn", message: "trace or alarm after a read failed", workflowId, error: String(err) })),
        );
      else await tail;
    }
  }

  private async settleTail(workflowId: string, projected: boolean): Promise<void> {
    if (projected) await this.writeTraces(workflowId);
    await this.armWatchdog();
    await this.parts.webhooks.arm();
  }

  /**
   * The traces of complete runs that lack one. A failure (R2 down) is logged and left to the
   * alarm, which stays set while a trace is missing (`isSettled`): it fails neither the push whose
   * events are recorded and in D1 (the host would push them again, in vain) nor the alarm's
   * reconciliation of a quiet run.
   */
  private async writeTraces(workflowId: string): Promise<void> {
    try {
      await this.parts.traces.writeMissing(workflowId);
    } catch (err) {
      console.warn(JSON.stringify({ level: "warn", message: "trace not written; the alarm tries again", workflowId, error: String(err) }));
    }
  }

  /** Watchdog: finish failed projections and traces; ask Temporal (via the host) about a quiet open run. */
  async alarm(): Promise<void> {
    // First the starts that an instance which went away left half-accepted; a DO that never
    // accepted a run keeps nothing else, and is not given a schema now. An undo D1 refuses has its
    // own alarm set already (run-starter.ts): the run this DO keeps, if any, is seen to all the same.
    try {
      await this.deps.starter.undoAbandonedAcceptances();
    } catch (err) {
      console.warn(
        JSON.stringify({
          level: "warn",
          message: "a half-accepted start could not be undone; it is tried again later",
          error: String(err),
        }),
      );
    }
    if (!this.deps.starter.keepsRun()) return;
    this.parts.watchdog.forget(); // the alarm that fired is gone; the start outbox may set its own
    if (await this.deps.starter.retryPending()) return; // a start not yet confirmed by Temporal
    const workflowId = this.parts.meta.get(META_KEYS.workflowId);
    if (!workflowId) {
      // Nothing reached the log: at most a run whose start was refused for good, whose end's webhook is due.
      await this.parts.webhooks.work(null);
      await this.parts.webhooks.arm();
      return;
    }
    try {
      await this.parts.resets.resolveStale(workflowId);
      await this.parts.projection.apply(workflowId, false);
      await this.writeTraces(workflowId);
      if (!this.isFinished()) {
        const check = await this.parts.watchdog.reconcile(workflowId, (events) => this.record(workflowId, events));
        if (check === "gone") await this.historyGone(workflowId);
      }
    } finally {
      await this.parts.webhooks.work(workflowId);
      await this.armWatchdog();
      await this.parts.webhooks.arm();
    }
  }

  /**
   * The host says Temporal has no such workflow any more (404 run_not_found: its retention deleted
   * the closed run before the relay delivered its close event, or the namespace was wiped), so the
   * history the log lacks will never come, and asking every MAX_WATCHDOG_INTERVAL_MS would never end.
   *
   * With the latest run's outcome in the log, every run with a logged outcome and no closing event
   * is marked, durably, as complete with the history it has (META_KEYS.historyNeverCloses, read by
   * EventLog.isComplete): the workflow is finished, its trace is written from the log, its webhook
   * is queued with the logged outcome (the alarm's `webhooks.work`), its streams end with that
   * outcome and the alarm stops. Without that outcome there is nothing true to record: the row
   * stays as it is, the loss is logged once, and checked rarely (Watchdog.lostOpenRun).
   *
   * A 404 cannot be a run that has not reached Temporal yet: a start still in the outbox is the
   * outbox's (`retryPending`, before any check), a confirmed start's `run.started` comes from the
   * host after Temporal started it, and a logged outcome came from Temporal.
   */
  private async historyGone(workflowId: string): Promise<void> {
    const { log, meta, subscribers, watchdog } = this.parts;
    const latest = log.latestRunId();
    if (!endsWorkflow(latest ? log.finished(latest) : null)) {
      watchdog.lostOpenRun(workflowId, latest);
      return;
    }
    const runs = log.finishedRunIds().filter((runId) => !log.isComplete(runId));
    const at = new Date().toISOString();
    for (const runId of runs) meta.set(META_KEYS.historyNeverCloses(runId), at);
    console.warn(
      JSON.stringify({
        level: "warn",
        message: "Temporal no longer has the workflow: its runs are complete with the history the log has",
        workflowId,
        runIds: runs,
      }),
    );
    for (const runId of runs) subscribers.releaseRun(runId);
    this.deps.appended(); // history pages waiting for the end look again
    await this.writeTraces(workflowId);
  }

  /**
   * The watchdog's alarm, which the start outbox shares: a start Temporal has not confirmed keeps
   * it set, by its next attempt at the latest, even once the run's events say it has ended (they
   * can arrive before the host's answer to the start does).
   */
  private armWatchdog(): Promise<void> {
    return this.parts.watchdog.arm(this.isSettled(), this.deps.starter.pendingAttemptAt());
  }

  /** The workflow's final outcome, once it has ended and D1 has all of it (webhooks go out then). */
  endedRun() {
    const { log } = this.parts;
    const latest = log.latestRunId();
    return latest !== null && this.isFinished() && !log.hasUnprojected() ? log.finished(latest) : null;
  }

  /** Nothing left to watch: the workflow is over, D1 has all of it and every trace is written. */
  private isSettled(): boolean {
    const { log, traces } = this.parts;
    const latest = log.latestRunId();
    return (
      latest !== null && this.isFinished() && !log.hasUnprojected() && !traces.isMissing(latest) && this.parts.resetMark.get() === null
    );
  }

  /** The workflow is over: its latest run ended (not by continuing as new) and its log is complete. */
  private isFinished(): boolean {
    const { log } = this.parts;
    const latest = log.latestRunId();
    return latest !== null && endsWorkflow(log.finished(latest)) && log.isComplete(latest);
  }
}

/** An outcome that ends the workflow: its run ended, and not by continuing as new. */
function endsWorkflow(outcome: RunOutcome | null): boolean {
  return outcome !== null && isTerminal(outcome.status) && outcome.status !== "continued_as_new";
}
