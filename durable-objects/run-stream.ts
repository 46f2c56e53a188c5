/**
 * RunStream: one Durable Object per workflow, addressed by the Temporal workflow id. A thin class
 * over small parts in ./run-stream/, one job each:
 *
 * - storage.ts     the versioned SQLite schema (and the migration of older storage), the meta table
 * - event-log.ts   the run's event log: at-least-once in, each source key once, typed reads
 * - projection.ts  the run's D1 row and step rows, one db.batch per application (single writer)
 * - waiting.ts     is the run blocked on a signal or human input (`waiting_since`)
 * - traces.ts      the trace of each finished run, written to R2
 * - fanout.ts      subscribers (hibernatable WebSockets), sent structured messages
 * - watchdog.ts    the alarm that reconciles a quiet run with Temporal through the host
 * - webhook-outbox.ts  completion webhooks: a durable outbox worked by the alarm
 * - start-and-subscribe.ts  the streaming starts: start, then subscribe, in one call
 * - trace-reader.ts  the trace log route's one call: ownership, settle, the trace from R2
 * - earlier-run.ts   a run-pinned read of a run the row no longer follows (reset, continue-as-new), from the log
 * - push-admission.ts  a push for a run the edge never accepted is dropped, and nothing is written
 *
 * State is hydrated once per wake, under blockConcurrencyWhile. Nothing here speaks SSE: the
 * stream routes frame the messages (messages.ts).
 */
import { DurableObject } from "cloudflare:workers";
import type { Attribute } from "../src/shared/aggregations.ts";
import type { RunEvent } from "../src/shared/run-event-schema.ts";
import { isTerminal } from "../src/shared/run-status.ts";
import { META_KEYS } from "./run-stream/constants.ts";
import { EventLog } from "./run-stream/event-log.ts";
import { Subscribers, parseSubscribeRequest } from "./run-stream/fanout.ts";
import type { RecordResult, StreamState, WorkflowSummary } from "./run-stream/messages.ts";
import { D1Projection } from "./run-stream/projection.ts";
import { type Meta, PushNonces, createSchema, openStorage } from "./run-stream/storage.ts";
import { PushAdmission } from "./run-stream/push-admission.ts";
import { TraceWriter } from "./run-stream/traces.ts";
import { WaitingDetector } from "./run-stream/waiting.ts";
import { Watchdog } from "./run-stream/watchdog.ts";
import { WebhookOutbox } from "./run-stream/webhook-outbox.ts";
import { RunStarter, type StartCommand } from "./run-stream/run-starter.ts";
import { RunReader, type ReadOptions } from "./run-stream/run-reader.ts";
import { readTraceLog } from "./run-stream/trace-reader.ts";
import { earlierRunView } from "./run-stream/earlier-run.ts";
import { admitSubscriber, ADMITTED_RUN_HEADER } from "./run-stream/subscriber-admission.ts";
import { START_AND_SUBSCRIBE_PATH, startAndSubscribe, startForStream } from "./run-stream/start-and-subscribe.ts";
import { runStartedEvent } from "../src/shared/run-events.ts";
import { prepareStart } from "../src/services/runs.ts";
import { ResetMark } from "./run-stream/reset-mark.ts";
import { ResetHolds, type ResetHoldReply, type ResetHoldRequest } from "./run-stream/reset-holds.ts";
import { toOutputEvent } from "../src/shared/output-history.ts";

export { DEFAULT_WATCHDOG_QUIET_MS, MAX_WATCHDOG_INTERVAL_MS, REPLAY_BATCH_SIZE, STREAM_DONE_CLOSE_CODE } from "./run-stream/constants.ts";
export type {
  LogEntry,
  RecordResult,
  RunOutcome,
  StreamState,
  SubscriberMessage,
  SubscriptionView,
  WorkflowSummary,
} from "./run-stream/messages.ts";

interface Parts {
  meta: Meta;
  nonces: PushNonces;
  log: EventLog;
  projection: D1Projection;
  traces: TraceWriter;
  subscribers: Subscribers;
  watchdog: Watchdog;
  webhooks: WebhookOutbox;
  resetMark: ResetMark;
  resets: ResetHolds;
}

export class RunStream extends DurableObject<Env> {
  private openedParts!: Parts;
  /** A new DO whose schema is not created yet: the first use of storage creates it (`storage()`). */
  private schemaPending = false;
  private readonly starter: RunStarter;
  private readonly reader: RunReader;
  private readonly admission: PushAdmission;

  /** The parts, over storage that has its schema (every use of storage goes through here or `storage()`). */
  private get parts(): Parts {
    this.storage();
    return this.openedParts;
  }

  /** The DO's SQLite, its schema created first if this is a new DO (storage.ts, push-admission.ts). */
  private storage(): SqlStorage {
    const sql = this.ctx.storage.sql;
    if (this.schemaPending) {
      createSchema(sql);
      this.schemaPending = false;
    }
    return sql;
  }

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const storage = () => this.storage();
    // The start path and reads (the Worker's one call into the home region): docs/start-path.md.
    this.starter = new RunStarter({
      get sql() {
        return storage();
      },
      env,
      storage: ctx.storage,
      prepare: prepareStart,
      recordStarted: (workflowId, runId) => this.recordStarted(workflowId, runId),
    });
    this.reader = new RunReader({
      env,
      starter: this.starter,
      attributes: () => this.attributes(),
      earlierRun: (current, runId, withAttributes) => earlierRunView(this.parts.log, current, runId, withAttributes),
      // A read that learned the outcome answers once D1 has it (the trace and the alarm follow).
      record: (workflowId, events) => this.recordEvents(workflowId, events, undefined, true),
    });
    this.admission = new PushAdmission({
      db: env.DB,
      knowsRun: () =>
        !this.schemaPending && ctx.storage.sql.exec("SELECT 1 FROM run_start UNION ALL SELECT 1 FROM events LIMIT 1").toArray().length > 0,
    });
    ctx.blockConcurrencyWhile(async () => {
      const sql = ctx.storage.sql;
      // A new DO (every run has one) reads nothing back; its schema is one statement batch, made on first use.
      const { meta, fresh } = openStorage(sql);
      this.schemaPending = fresh;
      const log = new EventLog(sql, fresh);
      const webhooks = new WebhookOutbox({ sql, storage: ctx.storage, env, log, meta, endedRun: () => this.endedRun() }, fresh);
      const resetMark = new ResetMark(meta);
      const watchdog = new Watchdog(ctx.storage, env, meta);
      this.openedParts = {
        meta,
        nonces: new PushNonces(sql, fresh),
        log,
        projection: new D1Projection(
          env.DB,
          log,
          new WaitingDetector(log, meta),
          (runId, hasWebhooks) => webhooks.noteFinished(runId, hasWebhooks),
          (runId) => resetMark.gate(runId),
        ),
        traces: new TraceWriter(env.TRACES, log, meta),
        subscribers: new Subscribers(ctx, log, (runId) => this.workflowSummary(runId)),
        watchdog,
        webhooks,
        resetMark,
        resets: new ResetHolds({
          env,
          log,
          meta,
          mark: resetMark,
          watchdog,
          settle: (workflowId) => this.settle(workflowId, false),
          record: (workflowId, events) => this.record(workflowId, events),
        }),
      };
    });
  }

  start(command: StartCommand) {
    return this.starter.start(command);
  }
  /** The log entry is written before this returns; its D1 projection finishes after the answer (the watchdog retries a failed one). */
  private async recordStarted(workflowId: string, runId: string): Promise<void> {
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
  /** A streaming start whose command is too big for start-and-subscribe's headers: the start, then a subscription (two calls). */
  startForStream(command: StartCommand, withRow: boolean) {
    return startForStream({ env: this.env, starter: this.starter }, command, withRow);
  }
  startAndWait(command: StartCommand, options: ReadOptions & { waitMs: number }) {
    return this.reader.startAndWait(command, options);
  }
  read(organizationId: string, workflowId: string, options?: ReadOptions) {
    return this.reader.read(organizationId, workflowId, options);
  }

  // ---------------------------------------------------------------- resets (reset-holds.ts)

  /** The reset route's first call: marks the reset pending, then takes its credit hold (reset-holds.ts). */
  holdForReset(request: ResetHoldRequest): Promise<ResetHoldReply> {
    return this.parts.resets.hold(request);
  }

  /** The host refused the reset: the hold is put back as it was, and an end held back meanwhile goes to D1. */
  undoResetHold(workflowId: string): Promise<void> {
    return this.parts.resets.undo(workflowId);
  }

  // ---------------------------------------------------------------- writing the log

  /**
   * Appends new events and sends them to subscribers (no await in between), then brings D1, the
   * traces and the watchdog up to date. `nonce` claims a signed push once. Events for a run the
   * edge never accepted (started directly in Temporal) are dropped, and nothing at all is written
   * (push-admission.ts): the answer says `dropped` so the host does not retry them.
   */
  async record(workflowId: string, events: RunEvent[], nonce?: { nonce: string; expiresAt: number }): Promise<RecordResult> {
    if (!(await this.admission.admits(workflowId))) return { accepted: 0, duplicates: 0, dropped: true };
    return this.recordEvents(workflowId, events, nonce, false);
  }

  private async recordEvents(
    workflowId: string,
    events: RunEvent[],
    nonce: { nonce: string; expiresAt: number } | undefined,
    tailLater: boolean,
  ): Promise<RecordResult> {
    const { meta, log, nonces, subscribers, watchdog } = this.parts;
    if (nonce && !nonces.claim(nonce)) return { accepted: 0, duplicates: 0, replayed: true };
    meta.set(META_KEYS.workflowId, workflowId);
    const fresh = log.append(events);
    this.parts.resetMark.noteAppended(fresh);
    if (fresh.length > 0) {
      watchdog.heard();
      subscribers.broadcast(fresh);
    }
    await this.settle(
      workflowId,
      fresh.some((r) => r.type === "history"),
      tailLater,
    );
    return { accepted: fresh.length, duplicates: events.length - fresh.length };
  }

  /**
   * D1, traces, then the alarm: what follows every change to the log (and every alarm).
   * `tailLater`: return once D1 has the change, and write traces and arm the alarm after (a
   * reader waiting for a run's outcome needs the row, not the trace; the alarm retries a trace
   * that fails).
   */
  private async settle(workflowId: string, newHistory: boolean, tailLater = false): Promise<void> {
    let projected = false;
    try {
      await this.parts.projection.apply(workflowId, newHistory);
      projected = true;
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
    try {
      if (projected) await this.parts.traces.writeMissing(workflowId);
    } finally {
      await this.parts.watchdog.arm(this.isSettled());
      await this.parts.webhooks.arm();
    }
  }

  /** The workflow's final outcome, once it has ended and D1 has all of it (webhooks go out then). */
  private endedRun() {
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
    const finished = latest ? log.finished(latest) : null;
    return finished !== null && isTerminal(finished.status) && finished.status !== "continued_as_new" && log.isComplete(latest!);
  }

  // ---------------------------------------------------------------- reads (RPC)

  /** The attributes recorded by the run's steps (every run of the workflow), in order. */
  async attributes(): Promise<Attribute[]> {
    return this.parts.log.attributes().map((r) => r.data.attribute);
  }

  /** The log in order (for tests and for readers that want raw events). */
  async events(afterSeq = 0): Promise<Array<RunEvent & { seq: number }>> {
    return this.parts.log
      .after(afterSeq)
      .map((r) => ({ seq: r.seq, sourceKey: r.sourceKey, type: r.type, at: r.at, data: r.data }) as RunEvent & { seq: number });
  }

  /** Stream state of `runId`, or of the latest run when none is given. */
  async streamState(runId?: string): Promise<StreamState> {
    const { log } = this.parts;
    const id = runId ?? log.latestRunId();
    if (!id) return { runId: null, finished: false, lastEventId: 0 };
    return { runId: id, finished: log.isComplete(id), lastEventId: log.lastHistoryEventId(id) };
  }

  /**
   * A page of a run's history, as streams send it: events after `afterEventId`, at most `limit`.
   * `nextAfterEventId` is null on the last page of a finished run.
   */
  async historyPage(runId: string | undefined, afterEventId: number, limit: number, includePayloads: boolean) {
    const { log } = this.parts;
    const id = runId ?? log.latestRunId();
    if (!id)
      return { runId: null, events: [], nextAfterEventId: null, complete: false, lastEventId: afterEventId, known: false, workflow: null };
    const rows = log.historyAfter(id, afterEventId, limit);
    const events = rows.map((r) => toOutputEvent(r.data.event, includePayloads));
    const complete = log.isComplete(id);
    const last = rows.at(-1)?.historyEventId ?? afterEventId;
    const more = rows.length === limit || !complete;
    const known = log.knowsRun(id);
    return {
      runId: id,
      events,
      nextAfterEventId: more ? last : null,
      complete,
      lastEventId: last,
      known,
      workflow: known ? this.workflowSummary(id) : null,
    };
  }

  /**
   * The trace of `runId` (or the latest run): its R2 key once the run is finished and its history
   * complete, written now if it was not yet; null while the run is still going.
   */
  private async traceFor(runId?: string): Promise<{ runId: string; key: string } | null> {
    const id = runId ?? this.parts.log.latestRunId();
    const workflowId = this.parts.meta.get(META_KEYS.workflowId);
    if (!id || !workflowId) return null;
    const key = await this.parts.traces.keyFor(workflowId, id);
    return key ? { runId: id, key } : null;
  }

  /** GET /workflow/:id/trace-log (and a pinned run's): the Worker's one call (run-stream/trace-reader.ts). */
  traceLog(organizationId: string, workflowId: string, pinnedRunId?: string) {
    const deps = {
      env: this.env,
      log: this.parts.log,
      read: (org: string, id: string) => this.reader.read(org, id),
      traceFor: (runId?: string) => this.traceFor(runId),
    };
    return readTraceLog(deps, organizationId, workflowId, pinnedRunId);
  }

  private workflowSummary(runId: string): WorkflowSummary {
    const { log, meta } = this.parts;
    const started = log.historyEvent(runId, 1);
    const finished = log.finished(runId);
    const lastEventId = log.lastHistoryEventId(runId);
    const closeTime = finished && lastEventId ? (log.historyEvent(runId, lastEventId)?.eventTime ?? null) : null;
    return {
      workflowId: meta.get(META_KEYS.workflowId),
      runId,
      status: finished?.status ?? "running",
      startTime: started?.eventTime ?? null,
      closeTime,
      historyLength: log.historyCount(runId),
      // Output's describe always names one; before the first history event arrives we cannot.
      taskQueue: (started?.attributes.taskQueue as { name?: string } | undefined)?.name ?? "",
      closed: finished !== null,
    };
  }

  /** The webhook outbox's rows (tests and diagnostics). */
  async webhookOutbox() {
    return this.parts.webhooks.rows();
  }

  // ---------------------------------------------------------------- subscribers

  /**
   * `GET /subscribe?runId=&after=&includePayloads=&workflowEvent=&view=` with `Upgrade: websocket`,
   * from the Worker only. Sends the backlog after `after`, then live events, then `done`.
   * `GET /start-and-subscribe` (also an upgrade): a streaming start, the run's start and then its
   * log subscription in one call (run-stream/start-and-subscribe.ts).
   */
  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (request.headers.get("upgrade") !== "websocket") return new Response("not found", { status: 404 });
    if (url.pathname === START_AND_SUBSCRIBE_PATH) {
      // A streaming start: the start and the subscription in one call (run-stream/start-and-subscribe.ts).
      const workflowId = url.searchParams.get("workflowId") ?? "";
      return startAndSubscribe(
        {
          env: this.env,
          starter: this.starter,
          accept: (id, subscription) => {
            this.parts.meta.set(META_KEYS.workflowId, id);
            return this.parts.subscribers.accept(subscription);
          },
        },
        request,
        workflowId,
      );
    }
    if (url.pathname !== "/subscribe") return new Response("not found", { status: 404 });
    const admission = await admitSubscriber(this.env, url.searchParams.get("workflowId") ?? "", url, {
      streamState: (id) => this.streamState(id),
      entriesAfter: (seq) => this.parts.log.after(seq),
    });
    if (admission && "refusal" in admission) return admission.refusal;
    const runId =
      admission?.runId || url.searchParams.get("runId") || this.parts.log.latestRunId() || url.searchParams.get("fallbackRunId");
    if (!runId) return new Response("run has no events yet and no run id was given", { status: 409 });
    const workflowId = url.searchParams.get("workflowId");
    if (workflowId) this.parts.meta.set(META_KEYS.workflowId, workflowId);
    const client = this.parts.subscribers.accept(parseSubscribeRequest(url, runId));
    return new Response(null, { status: 101, webSocket: client, headers: { [ADMITTED_RUN_HEADER]: runId } });
  }

  override async webSocketMessage(): Promise<void> {
    // Subscribers only listen.
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    // The Worker closed (its client left): nothing to keep. Closing our side completes the handshake.
    try {
      ws.close(code === 1005 ? 1000 : code, "bye");
    } catch {
      /* already closed */
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    try {
      ws.close(1011, "error");
    } catch {
      /* already closed */
    }
  }

  // ---------------------------------------------------------------- watchdog

  /** Watchdog: finish failed projections and traces; ask Temporal (via the host) about a quiet open run. */
  override async alarm(): Promise<void> {
    this.parts.watchdog.forget(); // the alarm that fired is gone; the start outbox may set its own
    if (await this.starter.retryPending()) return; // a start not yet confirmed by Temporal
    const workflowId = this.parts.meta.get(META_KEYS.workflowId);
    if (!workflowId) return;
    try {
      await this.parts.resets.resolveStale(workflowId);
      await this.parts.projection.apply(workflowId, false);
      await this.parts.traces.writeMissing(workflowId);
      if (!this.isFinished()) await this.parts.watchdog.reconcile(workflowId, (events) => this.record(workflowId, events));
    } finally {
      await this.parts.webhooks.work(workflowId);
      await this.parts.watchdog.arm(this.isSettled());
      await this.parts.webhooks.arm();
    }
  }
}
