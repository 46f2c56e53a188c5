/**
 * RunStream: one Durable Object per workflow, addressed by the Temporal workflow id. A thin class
 * over small parts in ./run-stream/, one job each:
 *
 * - storage.ts               the versioned SQLite schema (and the migration of older storage), push nonces
 * - meta.ts                  the meta table: small named values, hydrated once per wake, written through
 * - constants.ts             named intervals, limits, close codes and storage keys
 * - event-log.ts             the run's event log: at-least-once in, each source key once, typed reads
 * - push-admission.ts        a push for a run the edge never accepted is dropped, and nothing is written
 * - run-lifecycle.ts         what follows each change to the log, and each alarm: D1, traces, the alarm, webhooks
 * - projection.ts            the run's D1 row and step rows, one db.batch per application (single writer)
 * - row-limits.ts            what of a run's outcome fits its D1 row (the rest stays in the log)
 * - waiting.ts               is the run blocked on a signal or human input (`waiting_since`, the log's `run.waiting`)
 * - traces.ts                the trace of each finished run, written to R2
 * - fanout.ts                subscribers (hibernatable WebSockets), sent structured messages (messages.ts)
 * - watchdog.ts              the alarm that reconciles a quiet run with Temporal through the host
 * - webhook-outbox.ts        completion webhooks: a durable outbox worked by the alarm
 * - run-starter.ts           the start of a run, next to D1 and the host
 * - run-reader.ts            status, result and the blocking starts' outcome, in one call
 * - earlier-run.ts           a run-pinned read of a run the row no longer follows (reset, continue-as-new), from the log
 * - log-reader.ts            the log as the routes read it: stream state, history pages, the summary, attributes
 * - subscribe-upgrade.ts     `fetch`: the Worker's upgrades, a log subscription or a streaming start
 * - subscriber-admission.ts  a stream's first subscription decides 404/503/204 next to D1
 * - start-and-subscribe.ts   the streaming starts: start, then subscribe, in one call
 * - trace-reader.ts          the trace log route's one call: ownership, settle, the trace from R2
 * - reset-mark.ts            a reset in flight: the replaced run's final status waits for the reset's run
 * - reset-holds.ts           a reset's credit hold under that mark, and its undo
 *
 * State is hydrated once per wake, under blockConcurrencyWhile; each method below hands its call
 * to a part. Every use of storage goes through `parts` (or `storage()`), which makes a new DO's
 * schema first: a DO that only receives pushes it drops never gets there, and writes nothing.
 * Nothing here speaks SSE: the stream routes frame the messages (messages.ts).
 */
import { DurableObject } from "cloudflare:workers";
import type { Attribute } from "../src/shared/aggregations.ts";
import type { RunEvent } from "../src/shared/run-event-schema.ts";
import {
  META_KEYS,
  MAX_LOGGED_STEP_OUTPUTS_PER_READ,
  NORMAL_CLOSURE_CODE,
  NO_STATUS_CLOSE_CODE,
  SUBSCRIBER_ERROR_CLOSE_CODE,
} from "./run-stream/constants.ts";
import { EventLog } from "./run-stream/event-log.ts";
import { Subscribers } from "./run-stream/fanout.ts";
import type { LogEvent, RecordResult, StreamState } from "./run-stream/messages.ts";
import { D1Projection } from "./run-stream/projection.ts";
import type { Meta } from "./run-stream/meta.ts";
import { PushNonces, createSchema, openStorage } from "./run-stream/storage.ts";
import { PushAdmission } from "./run-stream/push-admission.ts";
import { TraceWriter } from "./run-stream/traces.ts";
import { WaitingDetector } from "./run-stream/waiting.ts";
import { Watchdog } from "./run-stream/watchdog.ts";
import { WebhookOutbox } from "./run-stream/webhook-outbox.ts";
import { RunStarter, type StartCommand, type StartOutcome } from "./run-stream/run-starter.ts";
import { RunReader, type ReadOptions } from "./run-stream/run-reader.ts";
import { readTraceLog } from "./run-stream/trace-reader.ts";
import { startForStream } from "./run-stream/start-and-subscribe.ts";
import { earlierRunView, pinnedRunInput } from "./run-stream/earlier-run.ts";
import { prepareStart } from "../src/services/runs.ts";
import { runFromRow } from "../src/db/runs.ts";
import { runStream } from "../src/run-stream-client.ts";
import { ResetMark } from "./run-stream/reset-mark.ts";
import { ResetHolds, type ResetHoldReply, type ResetHoldRequest } from "./run-stream/reset-holds.ts";
import { type HistoryPageWaits, LogReader } from "./run-stream/log-reader.ts";
import { LogWaiters } from "./run-stream/log-waiters.ts";
import { RunLifecycle } from "./run-stream/run-lifecycle.ts";
import { routeUpgrade } from "./run-stream/subscribe-upgrade.ts";

export {
  DEFAULT_WATCHDOG_QUIET_MS,
  MAX_WATCHDOG_INTERVAL_MS,
  REPLAY_BATCH_SIZE,
  STREAM_DONE_CLOSE_CODE,
  STREAM_MORE_CLOSE_CODE,
} from "./run-stream/constants.ts";
export type {
  LogEntry,
  LogEvent,
  RecordResult,
  RunOutcome,
  StreamState,
  SubscriberMessage,
  SubscriptionView,
  WorkflowSummary,
} from "./run-stream/messages.ts";

/** One step attempt's outputs read from the log, or `omitted` past MAX_LOGGED_STEP_OUTPUTS_PER_READ. */
export type LoggedStepOutputs = { outputs: unknown } | { omitted: true };

interface Parts {
  meta: Meta;
  nonces: PushNonces;
  log: EventLog;
  logReader: LogReader;
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
  private readonly lifecycle: RunLifecycle;
  /** History reads waiting for the log to change (a long-poll, a first page, a catch-up). */
  private readonly logWaiters = new LogWaiters();

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
      hasSchema: () => !this.schemaPending,
      env,
      storage: ctx.storage,
      prepare: prepareStart,
      isSettledStartIn: (workflowId, acceptId) => runStream(env, workflowId).isSettledStart(acceptId),
      recordStarted: (workflowId, runId) => this.lifecycle.recordStarted(workflowId, runId),
      noteNeverStarted: (run) => this.parts.webhooks.noteNeverStarted(run),
    });
    this.reader = new RunReader({
      env,
      starter: this.starter,
      attributes: (runId) => this.attributes(runId),
      earlierRun: (current, runId, withAttributes) => earlierRunView(this.parts.log, current, runId, withAttributes),
      pinnedInput: (runId, rowInput) => pinnedRunInput(this.parts.log, runId, rowInput),
      firstRunOf: (runId) => this.parts.log.lineage(runId).at(-1) ?? runId,
      // A read that learned the outcome answers once D1 has it (the trace and the alarm follow).
      record: async (workflowId, events) => {
        const { row } = await this.lifecycle.recordEvents(workflowId, events, { tailLater: true, readRow: true });
        return row ? runFromRow(row) : row;
      },
      project: async (workflowId) => {
        await this.lifecycle.settle(workflowId, false, { tailLater: true });
      },
      loggedOutput: (runId) => this.loggedOutput(runId),
      nextAppend: (ms) => this.logWaiters.next(ms),
      loggedRunId: () => (this.schemaPending ? null : this.parts.log.latestRunId()),
    });
    this.admission = new PushAdmission({
      db: env.DB,
      knowsRun: () =>
        !this.schemaPending && ctx.storage.sql.exec("SELECT 1 FROM run_start UNION ALL SELECT 1 FROM events LIMIT 1").toArray().length > 0,
    });
    this.lifecycle = new RunLifecycle({
      admission: this.admission,
      starter: this.starter,
      parts: () => this.parts,
      appended: () => this.logWaiters.wake(),
    });
    ctx.blockConcurrencyWhile(async () => {
      const sql = ctx.storage.sql;
      // A new DO (every run has one) reads nothing back; its schema is one statement batch, made on first use.
      const { meta, fresh } = openStorage(sql);
      this.schemaPending = fresh;
      const log = new EventLog(
        sql,
        fresh,
        (writes) => ctx.storage.transactionSync(writes),
        (runId) => meta.get(META_KEYS.historyNeverCloses(runId)) !== null,
      );
      const webhooks = new WebhookOutbox({ sql, storage: ctx.storage, env, log, meta, endedRun: () => this.lifecycle.endedRun() }, fresh);
      const resetMark = new ResetMark(meta, log);
      const subscribers = new Subscribers(
        ctx,
        log,
        (runId) => logReader.workflowSummary(runId),
        (runId) => resetMark.gate(runId),
      );
      const watchdog = new Watchdog(ctx.storage, env, meta);
      const traces = new TraceWriter(env.TRACES, log, meta);
      const logReader = new LogReader({ log, meta, traces });
      this.openedParts = {
        meta,
        nonces: new PushNonces(sql, fresh),
        log,
        logReader,
        projection: new D1Projection(
          env.DB,
          log,
          new WaitingDetector(log, meta),
          (runId, hasWebhooks) => webhooks.noteFinished(runId, hasWebhooks),
          (runId) => resetMark.gate(runId),
          (runId) => resetMark.usageGate(runId),
        ),
        traces,
        subscribers,
        watchdog,
        webhooks,
        resetMark,
        resets: new ResetHolds({
          env,
          log,
          meta,
          mark: resetMark,
          // The watchdog sets the alarm where it wants it; the webhook outbox then brings it back to a retry due sooner.
          armAlarm: async () => {
            await watchdog.arm(false);
            await webhooks.arm();
          },
          startPending: () => this.starter.hasPending(),
          settle: async (workflowId) => {
            await this.lifecycle.settle(workflowId, false);
          },
          record: (workflowId, events) => this.record(workflowId, events),
          markEnded: () => subscribers.releaseHeld(),
        }),
      };
    });
  }

  // ---------------------------------------------------------------- starts and reads of a run (run-starter.ts, run-reader.ts)

  start(command: StartCommand) {
    return this.starter.start(command);
  }
  /** Asked by another run's DO replaying an Idempotency-Key whose run is not yet confirmed (run-starter.ts). */
  isSettledStart(acceptId: string): boolean {
    return this.starter.isSettledStart(acceptId);
  }

  /** What became of a start whose call into this DO the Worker lost (run-starter.ts). */
  startOutcome(acceptId: string): StartOutcome {
    return this.starter.startOutcome(acceptId);
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

  // ---------------------------------------------------------------- writing the log (run-lifecycle.ts)

  /** The host's pushes (and the routes' own events): appended, broadcast, then D1, traces, the alarm. */
  record(workflowId: string, events: RunEvent[], nonce?: { nonce: string; expiresAt: number }): Promise<RecordResult> {
    return this.lifecycle.record(workflowId, events, nonce);
  }

  // ---------------------------------------------------------------- reads of the log (log-reader.ts, trace-reader.ts)

  /**
   * The attributes recorded by the steps that `runId`'s usage counts, in order: for the workflow's
   * latest run (or none named), every run's (EventLog.usageAttributes).
   */
  async attributes(runId: string | null): Promise<Attribute[]> {
    return this.parts.logReader.attributes(runId);
  }

  /** A finished run's output from the log (null if the log has no outcome for it): what a row too small for it points to (`outputInLog`). */
  loggedOutput(runId: string): unknown {
    return this.parts.log.finished(runId)?.output ?? null;
  }

  /**
   * Step attempts' outputs from the log, in the order asked (null where the log has none): what
   * step rows too small for them point to (`outputsInLog`). At most MAX_LOGGED_STEP_OUTPUTS_PER_READ
   * of them (each up to about 2 MiB, Temporal's payload limit), so one answer stays far inside the
   * DO's memory and an RPC's size; the others are `omitted`.
   */
  loggedStepOutputs(steps: ReadonlyArray<{ runId: string; activityId: string; attempt: number }>): LoggedStepOutputs[] {
    return steps.map((s, i) =>
      i < MAX_LOGGED_STEP_OUTPUTS_PER_READ ? { outputs: this.parts.log.stepOutputs(s.runId, s.activityId, s.attempt) } : { omitted: true },
    );
  }

  /** The log in order (for tests and for readers that want raw events). */
  async events(afterSeq = 0): Promise<Array<LogEvent & { seq: number }>> {
    return this.parts.logReader.events(afterSeq);
  }

  /** Stream state of `runId`, or of the latest run when none is given. */
  async streamState(runId?: string): Promise<StreamState> {
    return this.parts.logReader.streamState(runId);
  }

  /**
   * A page of a run's history (`GET /workflow/:id/history`), after the waits `waits` asks for,
   * each done here, next to the log, and woken by appends (log-waiters.ts): the Worker's one call.
   */
  async historyPage(
    runId: string | undefined,
    afterEventId: number,
    limit: number,
    includePayloads: boolean,
    waits: HistoryPageWaits = {},
  ) {
    const { logReader } = this.parts;
    let page = logReader.historyPage(runId, afterEventId, limit, includePayloads);
    /** Reads the page again at each append until `pending` says no or `ms` ran out, staying on the run it found. */
    const waitWhile = async (ms: number | undefined, pending: () => boolean) => {
      const followed = page.runId ?? undefined;
      for (const deadline = Date.now() + (ms ?? 0); pending() && Date.now() < deadline; ) {
        await this.logWaiters.next(deadline - Date.now());
        page = logReader.historyPage(followed, afterEventId, limit, includePayloads);
      }
    };
    await waitWhile(waits.catchUpMs, () => page.ending);
    if (afterEventId === 0) await waitWhile(waits.firstEventsMs, () => page.known && page.events.length === 0);
    // A run asked for by id that the log does not know is answered at once (the route's 404).
    await waitWhile(waits.longPollMs, () => (page.known || runId === undefined) && page.events.length === 0 && !page.complete);
    return page;
  }

  /** GET /workflow/:id/trace-log (and a pinned run's): the Worker's one call (run-stream/trace-reader.ts). */
  traceLog(organizationId: string, workflowId: string, pinnedRunId?: string) {
    const { log, logReader } = this.parts;
    const read = (org: string, id: string) => this.reader.read(org, id);
    return readTraceLog(
      { env: this.env, log, read, traceFor: (runId) => logReader.traceFor(runId), nextAppend: (ms) => this.logWaiters.next(ms) },
      organizationId,
      workflowId,
      pinnedRunId,
    );
  }

  /** The webhook outbox's rows (tests and diagnostics). */
  async webhookOutbox() {
    return this.parts.webhooks.rows();
  }

  // ---------------------------------------------------------------- subscribers (subscribe-upgrade.ts)

  /** The Worker's WebSocket upgrades: a log subscription, or a streaming start and its subscription. */
  override fetch(request: Request): Promise<Response> {
    return routeUpgrade(
      { env: this.env, starter: this.starter, subscriberCount: () => this.ctx.getWebSockets().length, parts: () => this.parts },
      request,
    );
  }

  override async webSocketMessage(): Promise<void> {
    // Subscribers only listen.
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    // The Worker closed (its client left): nothing to keep. Closing our side completes the handshake,
    // with the Worker's code (a close without one is answered as a normal closure: 1005 cannot be sent).
    try {
      ws.close(code === NO_STATUS_CLOSE_CODE ? NORMAL_CLOSURE_CODE : code, "bye");
    } catch {
      /* already closed */
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    try {
      ws.close(SUBSCRIBER_ERROR_CLOSE_CODE, "error");
    } catch {
      /* already closed */
    }
  }

  // ---------------------------------------------------------------- watchdog (run-lifecycle.ts, watchdog.ts)

  /** Watchdog: finish failed projections and traces; ask Temporal (via the host) about a quiet open run. */
  override alarm(): Promise<void> {
    return this.lifecycle.alarm();
  }
}
