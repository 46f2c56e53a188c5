/**
 * Relays each run's Temporal history to the edge, once per run whatever the number of stream
 * subscribers: one long-poll (`waitNewEvent`) per open run, each new batch pushed to the run's
 * RunStream as `history` events keyed `history:<runId>:<eventId>`, then `run.finished` when the
 * run closes (following continue-as-new to the next run).
 *
 * Delivery is at-least-once. After a host restart every open run on the task queue is followed
 * again from its first event; the edge drops what it already has. A run is let go of only once
 * its end is pushed, or when Temporal has no such run: any other failure is retried with backoff.
 * Pages the edge has not taken are held up to MAX_QUEUED_HISTORY_BYTES, however many runs are open.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { WorkflowFailedError, WorkflowNotFoundError, type Client } from "@temporalio/client";
import { decodeRetryState } from "@temporalio/common";
import type { RunEvent, RunResultResponse } from "../src/shared/host-api.ts";
import { runFinishedEvent } from "../src/shared/run-events.ts";
import type { EdgeClient } from "./edge-client.ts";
import { CLOSE_EVENT_TYPES } from "../src/shared/history-events.ts";
import { failureDetails } from "./failure-details.ts";
import { serializeHistoryEvent } from "./history-serialization.ts";
import { failureMessage, runResult, TEMPORAL_CALL_WAIT_MS, withinDeadline } from "./temporal.ts";
import type { temporal } from "@temporalio/proto";

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/**
 * Pause after a page of new events (once the edge has it) before asking for more: events of one
 * workflow task come in quick succession, and waiting a moment lets the next request return them
 * together (fewer history requests and pushes per run, for a few ms of stream latency). Counting
 * the push's own time toward the pause was tried: the close event reached the edge about 17 ms
 * sooner, but runs made more pages and pushes, and on `wrangler dev`'s one thread a blocking run
 * got slower (docs/start-path.md).
 */
export const RELAY_COALESCE_MS = 20;

/**
 * Bytes of history pages (as JSON) handed to the EdgeClient and not yet taken by the edge, past
 * which the relay holds off. Each relay waits for its push before reading its next page, so
 * without it an edge away for hours leaves one page of every open run in memory (a page: up to the
 * 1,000 events the relay asks for, each with payloads of up to Temporal's 2 MiB, within the run's
 * history of at most 50 MiB): after a host restart, every open run's first page. Past it, a page
 * read is let go of (Temporal keeps it) and read again once there is room, runs in turn. Well above
 * what the two pushes on the wire carry (2 x MAX_PUSH_BYTES): an edge that keeps up never makes
 * the relay wait. The JSON is measured once per page (microseconds, beside the page's own
 * serialization).
 */
export const MAX_QUEUED_HISTORY_BYTES = 64 * 1024 * 1024;

/**
 * How long one history long-poll may take. Temporal's frontend answers a long-poll that found no
 * new event after about 20 s (its long-poll expiration), so one still unanswered well past that is
 * held by a Temporal that is connected but stuck: given up, and asked again from the same page
 * after a backoff. Without it the run's relay waited for ever, and the watchdog's follow could not
 * revive it, as the run still counted as followed.
 */
export const RELAY_LONG_POLL_WAIT_MS = 60_000;

/** The relay's limits on its Temporal calls (a test waits less). */
export interface RelayWaits {
  longPollMs: number;
  callMs: number;
}

/** Runs a function in the async context of this module's loading: no request's (AsyncLocalStorage). */
const OUTSIDE_ANY_REQUEST = AsyncLocalStorage.snapshot();

/** How the relay waits (a test records the pauses instead of timing them). */
export type Sleep = (ms: number) => Promise<void>;
const sleep: Sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Pauses after failures, doubling from RETRY_BASE_MS to RETRY_MAX_MS, with up to half again of
 * jitter, so that the long-polls of many runs do not retry in step when Temporal restarts or
 * sheds load (one long-poll per open run).
 */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 30_000;

/** The pause after the `failures`-th failure in a row (1-based). */
export function relayRetryDelay(failures: number, random: () => number = Math.random): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(failures - 1, 10));
  return Math.round(base * (1 + random() / 2));
}

/** Temporal has no such workflow or run (any more): nothing to follow. */
const isNotFound = (err: unknown) => err instanceof WorkflowNotFoundError || (err as { code?: number }).code === 5;

export class HistoryRelay {
  private readonly following = new Set<string>();
  /** Runs a reset started while the workflow's previous run was still followed: relayed next. */
  private readonly resetSuccessors = new Map<string, string>();
  /** Temporal GetWorkflowExecutionHistory calls made, for the benchmark's per-run figure. */
  historyRequests = 0;
  private stopped = false;

  constructor(
    private readonly client: Client,
    private readonly edge: EdgeClient,
    private readonly taskQueue: string,
    private readonly pause: Sleep = sleep,
    private readonly maxQueuedBytes = MAX_QUEUED_HISTORY_BYTES,
    private readonly waits: RelayWaits = { longPollMs: RELAY_LONG_POLL_WAIT_MS, callMs: TEMPORAL_CALL_WAIT_MS },
  ) {}

  /** `calls` within the relay's limit for them (`ms`): past it, TemporalDeadlineError, retried as any failure. */
  private within<T>(ms: number, calls: () => Promise<T>): Promise<T> {
    return withinDeadline(this.client, ms, calls);
  }

  get size(): number {
    return this.following.size;
  }

  /**
   * Follows a run until it closes; a second call for a run already followed is a no-op. `runId`
   * (known right after a start) saves describing the workflow first.
   */
  follow(workflowId: string, runId?: string): void {
    if (this.following.has(workflowId) || this.stopped) return;
    this.resetSuccessors.delete(workflowId);
    this.following.add(workflowId);
    // In no caller's async context: a request follows a run from inside its own Temporal deadline
    // and abort signal (the control API's withinDeadline around a start), which every Temporal call
    // made from there on inherits; the run's long-polls would fail with it from then on, for good.
    void OUTSIDE_ANY_REQUEST(() => this.relay(workflowId, runId))
      .catch((err) => console.warn(`history relay: gave up on ${workflowId}: ${String(err)}`))
      .finally(() => this.following.delete(workflowId));
  }

  /**
   * A reset replaced the workflow's run with `newRunId`: relay that run next (at once if the
   * workflow is not followed any more, else as soon as the old run's history ends).
   */
  followReset(workflowId: string, newRunId: string): void {
    if (this.following.has(workflowId)) this.resetSuccessors.set(workflowId, newRunId);
    else this.follow(workflowId, newRunId);
  }

  stop(): void {
    this.stopped = true;
  }

  async reattachOpenRuns(): Promise<number> {
    let count = 0;
    const query = `TaskQueue = '${this.taskQueue}' AND ExecutionStatus = 'Running'`;
    for await (const execution of this.client.workflow.list({ query })) {
      this.follow(execution.workflowId);
      count++;
    }
    return count;
  }

  private async relay(workflowId: string, knownRunId?: string): Promise<void> {
    let runId: string | undefined =
      knownRunId ??
      (await this.retrying(workflowId, () =>
        this.within(this.waits.callMs, async () => (await this.client.workflow.getHandle(workflowId).describe()).runId),
      ));
    while (runId && !this.stopped) {
      const relayed: string = runId;
      // A reset names no successor in the old run's history: the reset route tells us.
      runId = (await this.retrying(workflowId, () => this.relayRun(workflowId, relayed))) ?? this.resetSuccessors.get(workflowId);
      this.resetSuccessors.delete(workflowId);
      if (runId === relayed) runId = undefined;
    }
  }

  /**
   * Does `work` until it succeeds: a failure (Temporal unreachable, a push the edge did not take
   * in all its tries, an outcome Temporal could not give) is logged and tried again after a
   * backoff, from the run's first page (the edge drops what it already has). Only a run Temporal
   * does not have, or the relay stopping, ends it.
   */
  private async retrying<T>(workflowId: string, work: () => Promise<T>): Promise<T> {
    for (let failures = 1; ; failures++) {
      try {
        return await work();
      } catch (err) {
        if (this.stopped || isNotFound(err)) throw err;
        const delay = relayRetryDelay(failures);
        console.warn(`history relay: ${workflowId}: ${String(err)}; trying again in ${delay} ms`);
        await this.pause(delay);
      }
    }
  }

  /** Relays one run; returns the next run's id after a continue-as-new. */
  private async relayRun(workflowId: string, runId: string): Promise<string | undefined> {
    let nextPageToken: Uint8Array | undefined;
    let failures = 0;
    /** Room the EdgeClient keeps for a page let go of for want of it, while the page is read again. */
    let room: (() => void) | undefined;
    try {
      for (;;) {
        if (this.stopped) return undefined;
        const page = await this.relayPage(workflowId, runId, nextPageToken, room);
        if (page.unread) {
          // The long-poll resumes from the same page.
          await this.pause(relayRetryDelay(++failures));
          continue;
        }
        failures = 0;
        if (page.heldOff !== undefined) {
          // Read again from the same token once there is room. The page is not waited with: it was
          // read in relayPage, whose frame is gone (an await here would keep what this frame holds).
          room = await this.edge.roomFor(page.heldOff, this.maxQueuedBytes);
          continue;
        }
        // Handed over with the page (or, should the page read again be empty, given back).
        room?.();
        room = undefined;
        if (page.closed) return page.nextRunId;
        nextPageToken = page.nextPageToken;
        if (!nextPageToken && page.events === 0) {
          // No token and nothing new: the run is closed and we saw its end before. Done.
          return undefined;
        }
        if (page.events > 0) await this.pause(RELAY_COALESCE_MS);
      }
    } finally {
      room?.();
    }
  }

  /**
   * Reads the run's next page and pushes it, once the edge has it. Without room for it with the
   * EdgeClient (MAX_QUEUED_HISTORY_BYTES of pages the edge has not taken yet) and none kept for it
   * (`room`, released once the page is handed over), the page is let go of: `heldOff`, its size.
   */
  private async relayPage(
    workflowId: string,
    runId: string,
    nextPageToken: Uint8Array | undefined,
    room: (() => void) | undefined,
  ): Promise<
    | { unread: true; heldOff?: undefined }
    | { unread?: false; heldOff: number }
    | { unread?: false; heldOff?: undefined; closed: true; nextRunId: string | undefined }
    | { unread?: false; heldOff?: undefined; closed?: false; nextPageToken: Uint8Array | undefined; events: number }
  > {
    let response;
    try {
      this.historyRequests++;
      response = await this.within(this.waits.longPollMs, () =>
        this.client.workflowService.getWorkflowExecutionHistory({
          namespace: this.client.options.namespace,
          execution: { workflowId, runId },
          nextPageToken,
          waitNewEvent: true,
          maximumPageSize: 1000,
        }),
      );
    } catch (err) {
      if (isNotFound(err)) throw err; // nothing to follow
      return { unread: true };
    }
    const next = response.nextPageToken?.length ? response.nextPageToken : undefined;
    const events = response.history?.events ?? [];
    if (events.length === 0) return { nextPageToken: next, events: 0 };
    const serialized = events.map(serializeHistoryEvent);
    const history = serialized.map(
      (event): RunEvent => ({
        sourceKey: `history:${runId}:${event.eventId}`,
        type: "history",
        at: event.eventTime ?? new Date().toISOString(),
        data: { runId, event },
      }),
    );
    const closeIndex = serialized.findIndex((e) => CLOSE_EVENT_TYPES.includes(e.eventType));
    let push = history;
    let outcome: Omit<RunResultResponse, "workflowId"> | undefined;
    if (closeIndex >= 0) {
      const close = serialized[closeIndex]!;
      // The close event says how the run ended, so the last history and the outcome go out in
      // one push; only outcomes it cannot word as Temporal's client does (cancel, terminate,
      // time-out) ask Temporal for the result first.
      outcome =
        this.outcomeOf(runId, events[closeIndex]!) ??
        (await this.within(this.waits.callMs, () => runResult(this.client, workflowId, 0, runId)));
      push = [...history, runFinishedEvent({ ...outcome, closeTime: close.eventTime ?? outcome.closeTime })];
    }
    const bytes = JSON.stringify(push).length;
    if (!room && !this.edge.hasRoomFor(bytes, this.maxQueuedBytes)) return { heldOff: bytes };
    // The outcome is sent at once, not after the push window: readers and streams wait for it.
    const pushed = this.edge.pushRunEvents(workflowId, push, { now: outcome !== undefined, bytes });
    room?.();
    await pushed;
    if (outcome) return { closed: true, nextRunId: outcome.newRunId ?? undefined };
    return { nextPageToken: next, events: events.length };
  }

  /** The outcome of a run from its close event, when it completed, failed or continued as new. */
  private outcomeOf(runId: string, event: HistoryEvent): Omit<RunResultResponse, "workflowId"> | null {
    const { payloadConverter, failureConverter } = this.client.options.loadedDataConverter;
    const base = { runId, closeTime: null, output: null, error: null };
    if (event.workflowExecutionCompletedEventAttributes) {
      const payloads = event.workflowExecutionCompletedEventAttributes.result?.payloads ?? [];
      const output = payloads[0] ? payloadConverter.fromPayload(payloads[0] as temporal.api.common.v1.Payload) : null;
      return { ...base, status: "completed", output: output ?? null };
    }
    if (event.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId) {
      return { ...base, status: "continued_as_new", newRunId: event.workflowExecutionContinuedAsNewEventAttributes.newExecutionRunId };
    }
    const failed = event.workflowExecutionFailedEventAttributes;
    if (failed?.failure) {
      // As the client's result() words it: the run's failure under Temporal's WorkflowFailedError.
      const cause = failureConverter.failureToError(failed.failure as temporal.api.failure.v1.IFailure, payloadConverter);
      const err = new WorkflowFailedError("Workflow execution failed", cause, decodeRetryState(failed.retryState)!);
      return { ...base, status: "failed", error: failureMessage(err), errorDetails: failureDetails(err) };
    }
    return null;
  }
}
