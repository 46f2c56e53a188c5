/**
 * Signed calls from the host to the edge: run events and the workflow catalog.
 *
 * Run events of every run are batched: events handed to `pushRunEvents` within PUSH_WINDOW_MS
 * (or while earlier pushes are in flight; a run's outcome, pushed with `now`, does not wait for
 * the window) go out together in one signed push to
 * `/internal/run-events`, grouped by workflow id, at most MAX_PUSH_EVENTS a push and at most
 * MAX_PUSHES_IN_FLIGHT pushes at once, a run in one of them at most (so the edge gets each run's
 * events in order). Under load the pushes grow instead of multiplying.
 * `pushRunEvents` resolves once the edge has recorded the caller's events, so a caller that
 * awaits it (an activity publishing its step's end) knows they are durable.
 *
 * Delivery is at-least-once: a failed push is retried with backoff (at least the answer's
 * Retry-After, up to RETRY_AFTER_MAX_MS) under a fresh signature, and the edge drops duplicates by
 * sourceKey. A redirect, or a 2xx whose body is not the edge's answer (something else answered at
 * its address), is a failed push too. A push the edge refuses (4xx) is logged as an error and
 * retried run by run, so one bad run cannot hold up the others; nothing is dropped silently. A run
 * refused (in a push with others or on its own) is tried again alone, once per backoff and off the
 * push slots. A 401 or 404 says nothing about the push (the secrets differ, no such route): retried
 * whole, loudly, not run by run. When the edge recorded some runs of a push but not others (a 503
 * naming them, `failedRuns`), the recorded ones are done and the others go back to the queue after
 * a backoff, off the push slots, so a run the edge cannot take neither blocks the pushes of other
 * runs nor takes them down with it. A push given up after its tries takes with it the entries of
 * its runs waiting behind it, so the edge never gets a run's later events before the earlier ones
 * (the journal hands them over again, in order).
 *
 * The one thing the edge drops on purpose: events of a run no one started through the edge (an
 * operator's `temporal workflow start`, a benchmark's direct runs). Its DO keeps nothing and the
 * push succeeds with those runs counted as `dropped` (the edge logs each workflow id once): they
 * are done with, not retried, and `counters.droppedRuns` adds them up.
 */
import type { z } from "zod";
import {
  EDGE_PATHS,
  type CatalogEntry,
  catalogPublishResult,
  type RunEvent,
  runEventPushPartialFailure,
  runEventPushResult,
} from "../src/shared/host-api.ts";
import { MAX_SIGNED_BODY_BYTES } from "../src/shared/capped-body.ts";
import { MAX_EVENTS_PER_PUSH, MAX_RUNS_PER_PUSH } from "../src/shared/run-event-schema.ts";
import { retryAfterMs } from "../src/shared/retry-after.ts";
import { signRequest } from "../src/shared/signing.ts";

const RETRY_BASE_MS = 250;
const RETRY_MAX_MS = 5_000;
/**
 * The most a Retry-After (on a 429, a 5xx, or the edge's 503 naming the runs it could not record)
 * makes a push wait before its next try: the answer says when to come back, but one saying an hour
 * (a proxy's, or a mistake) must not park a run's events for that long.
 */
export const RETRY_AFTER_MAX_MS = 60_000;
/**
 * Refusals that say nothing about the push: 401, the edge does not take the host's signature (its
 * HOST_SHARED_SECRET differs, or the host's clock is off), and 404, no run-event route at the
 * edge's address (a wrong EDGE_URL, or an edge that predates it). Every push gets the same answer,
 * so one is retried whole (loud, like a 5xx), never split into a push per run, which would only
 * multiply the requests and the error lines by the number of runs.
 */
const NOT_THE_PUSH_STATUSES: ReadonlySet<number> = new Set([401, 404]);
/**
 * After this many failed tries a push is given up: history is relayed again when the edge's
 * watchdog asks, and what activities published stays in the host's journal, which pushes it again
 * (run-event-journal.ts).
 */
const MAX_ATTEMPTS = 30;
/**
 * One try's limit: an edge (or a proxy in front of it) that takes the connection and never answers
 * must not hold a push slot, and the steps waiting on it, until Node's own 300 s header timeout.
 */
export const PUSH_TIMEOUT_MS = 30_000;
/** How long the first event of a push waits for others to join it. */
export const PUSH_WINDOW_MS = 5;
/** A refused push is sent again run by run, this many runs at once. */
export const SPLIT_PUSHES_AT_ONCE = 4;
/** Pushes of run events on the wire at once; events that arrive meanwhile wait for the next. */
export const MAX_PUSHES_IN_FLIGHT = 2;
/** Events in one push (the edge accepts at most MAX_EVENTS_PER_PUSH). */
export const MAX_PUSH_EVENTS = Math.min(500, MAX_EVENTS_PER_PUSH);
/**
 * A push whose body is larger than this goes out in parts (runs, then a run's events, halved, in
 * order), well below the edge's MAX_SIGNED_BODY_BYTES; only a single event larger than that is refused.
 */
export const MAX_PUSH_BYTES = MAX_SIGNED_BODY_BYTES / 4;
/**
 * The edge's answer to a run event push it recorded. An edge that predates `dropped` answers
 * without it (nothing dropped); the rest must be there: a 2xx without them came from something
 * other than the edge (a proxy's or an access gateway's page), which recorded nothing.
 */
const RUN_EVENT_PUSH_ANSWER = runEventPushResult.extend({ dropped: runEventPushResult.shape.dropped.optional() });

interface Pending {
  workflowId: string;
  events: RunEvent[];
  resolve: () => void;
  reject: (err: Error) => void;
  /** Sent without waiting for the push window (a run's outcome). */
  now: boolean;
  /** Pushes that carried this entry and that the edge answered as not recorded for its run. */
  failures: number;
  /**
   * Shared by the entries of one `pushRunEvents` call (a run's events larger than one push, and
   * the halves of one sent in parts): once one is given up, the others are not sent, so the edge
   * never gets the later events of a call without the earlier ones.
   */
  call: { givenUp: boolean };
  /**
   * The edge refused this run's events in a push with other runs: from then on they go out in a
   * push of their own, one try at a time with a backoff between (`retryLater`), so that a run the
   * edge keeps refusing holds up no other run and no push slot while it waits.
   */
  alone?: boolean;
}

/** What the host sent the edge so far (the control API's /v1/metrics shows it). */
export interface EdgePushCounters {
  /** Signed requests that carried run events (each attempt counts). */
  runEventRequests: number;
  /** Events handed to pushRunEvents. */
  runEvents: number;
  /** Pushes the edge refused (4xx), each attempt. */
  refused: number;
  /** Runs in delivered pushes whose events the edge did not keep: not started through the edge (see above). */
  droppedRuns: number;
}

export class EdgeClient {
  readonly counters: EdgePushCounters = { runEventRequests: 0, runEvents: 0, refused: 0, droppedRuns: 0 };
  private queue: Pending[] = [];
  private queuedEvents = 0;
  /** Queued entries pushed with `now`. */
  private queuedNow = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight = 0;
  /** Runs with events in a push on the wire (each in one push at most). */
  private readonly runsInFlight = new Set<string>();
  /** Runs whose entries wait out a backoff before going back to the queue, with those entries in order (see `retryLater`). */
  private readonly backingOff = new Map<string, Pending[]>();
  private idleWaiters: Array<() => void> = [];
  /**
   * Bytes of the calls that said their size (`bytes`: the history relay's pages) and that are not
   * taken or given up yet: queued, on the wire or backing off. The relay holds off past its bound
   * (`roomFor`), so an edge away for hours does not leave a page of every open run in memory.
   */
  private heldBytes = 0;
  /** Room promised to callers `roomFor` woke, which are reading their page again (see `roomFor`). */
  private promisedBytes = 0;
  /** Callers waiting for room, in the order they came. */
  private roomWaiters: Array<{ bytes: number; limit: number; wake: (release: () => void) => void }> = [];

  constructor(
    private readonly edgeUrl: string,
    private readonly secret: string,
    private readonly log: (msg: string) => void = (msg) => console.warn(msg),
    /** Tries per push before it is given up (the edge's watchdog reconciles what was lost). */
    private readonly maxAttempts = MAX_ATTEMPTS,
    private readonly windowMs = PUSH_WINDOW_MS,
    private readonly requestTimeoutMs = PUSH_TIMEOUT_MS,
  ) {}

  /**
   * Queues a run's events for the next push; resolves when the edge has recorded them. `now`: the
   * push goes out at once (as soon as a slot is free) instead of after the push window, taking
   * whatever else is queued with it; for events someone waits on, such as a run's outcome.
   * `bytes`: the events' size, as JSON, held against the bound of callers that wait for room
   * (`hasRoomFor`, `roomFor`) until the edge takes them or they are given up.
   */
  pushRunEvents(workflowId: string, events: RunEvent[], { now = false, bytes = 0 }: { now?: boolean; bytes?: number } = {}): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    this.counters.runEvents += events.length;
    return new Promise<void>((resolveCall, rejectCall) => {
      let resolve = resolveCall;
      let reject = rejectCall;
      if (bytes > 0) {
        // Held until the call settles (its parts resolve it once, or are given up, each rejecting it).
        this.heldBytes += bytes;
        let held = true;
        const settle = () => {
          if (!held) return;
          held = false;
          this.heldBytes -= bytes;
          this.wakeRoomWaiters();
        };
        resolve = () => {
          settle();
          resolveCall();
        };
        reject = (err) => {
          settle();
          rejectCall(err);
        };
      }
      const call = { givenUp: false };
      // A run's events larger than one push go in several, in order.
      for (let i = 0; i < events.length; i += MAX_PUSH_EVENTS) {
        const part = events.slice(i, i + MAX_PUSH_EVENTS);
        const last = i + MAX_PUSH_EVENTS >= events.length;
        this.queue.push({ workflowId, events: part, resolve: last ? resolve : () => undefined, reject, now, failures: 0, call });
        this.queuedEvents += part.length;
        if (now) this.queuedNow++;
      }
      this.schedule();
    });
  }

  /**
   * Whether `bytes` more fit under `limit` now, with no caller waiting for room before them: none
   * held (a call larger than `limit` goes alone), or held ones and these within it.
   */
  hasRoomFor(bytes: number, limit: number): boolean {
    return this.roomWaiters.length === 0 && this.fits(bytes, limit);
  }

  /**
   * Waits, in turn, until `bytes` fit under `limit`, and keeps that room for the caller until it
   * calls the release it gets (once it has pushed with `bytes`, or let go). Callers are woken one
   * room at a time, not all at once: each woken one reads its page again before pushing it, and
   * woken together they would all hold a page at the same moment.
   */
  roomFor(bytes: number, limit: number): Promise<() => void> {
    return new Promise((wake) => {
      this.roomWaiters.push({ bytes, limit, wake });
      this.wakeRoomWaiters();
    });
  }

  private fits(bytes: number, limit: number): boolean {
    const held = this.heldBytes + this.promisedBytes;
    return held === 0 || held + bytes <= limit;
  }

  private wakeRoomWaiters(): void {
    for (let next = this.roomWaiters[0]; next && this.fits(next.bytes, next.limit); next = this.roomWaiters[0]) {
      this.roomWaiters.shift();
      const { bytes } = next;
      this.promisedBytes += bytes;
      let promised = true;
      next.wake(() => {
        if (!promised) return;
        promised = false;
        this.promisedBytes -= bytes;
        this.wakeRoomWaiters();
      });
    }
  }

  /** Resolves when every queued event has been delivered or given up (host shutdown). */
  drain(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Publishes the catalog, trying until the edge takes it however long that is (the edge may come
   * up, or be deployed with code that accepts it, long after the host): without it the edge keeps
   * an old catalog, or none, until the host restarts.
   */
  async publishCatalog(workflows: CatalogEntry[]): Promise<void> {
    await this.postWithRetry(EDGE_PATHS.catalog, JSON.stringify({ workflows }), catalogPublishResult, {
      maxAttempts: Number.POSITIVE_INFINITY,
    });
  }

  private idle(): boolean {
    return this.queue.length === 0 && this.inFlight === 0 && this.backingOff.size === 0;
  }

  private schedule(): void {
    if (this.queue.length === 0) {
      if (this.idle()) for (const wake of this.idleWaiters.splice(0)) wake();
      return;
    }
    if (this.inFlight >= MAX_PUSHES_IN_FLIGHT) return; // sent when a push in flight ends
    if (this.queuedEvents >= MAX_PUSH_EVENTS || this.queuedNow > 0) {
      this.flush();
      return;
    }
    this.timer ??= setTimeout(() => this.flush(), this.windowMs);
  }

  private flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.queue.length === 0 || this.inFlight >= MAX_PUSHES_IN_FLIGHT) return;
    const batch: Pending[] = [];
    const waiting: Pending[] = [];
    const runs = new Set<string>();
    // A run with events on the wire keeps its next ones queued until that push ends, so the edge
    // gets each run's events in order (its closing event never before the ones it follows).
    const held = new Set([...this.runsInFlight, ...this.backingOff.keys()]);
    let events = 0;
    let i = 0;
    for (; i < this.queue.length; i++) {
      const next = this.queue[i]!;
      if (held.has(next.workflowId)) {
        waiting.push(next);
        continue;
      }
      // A refused run goes in a push of its own: the next one; its later entries wait behind it.
      if (next.alone && batch.length > 0) {
        waiting.push(next);
        held.add(next.workflowId);
        continue;
      }
      const full =
        batch.length > 0 &&
        (events + next.events.length > MAX_PUSH_EVENTS || (!runs.has(next.workflowId) && runs.size >= MAX_RUNS_PER_PUSH));
      if (full) break;
      batch.push(next);
      if (next.now) this.queuedNow--;
      runs.add(next.workflowId);
      events += next.events.length;
      if (next.alone) {
        i++;
        break;
      }
    }
    // Every run queued is on the wire already: the end of its push schedules the next.
    if (batch.length === 0) return;
    this.queue = waiting.concat(this.queue.slice(i));
    this.queuedEvents -= events;
    this.inFlight++;
    for (const run of runs) this.runsInFlight.add(run);
    void this.send(batch).finally(() => {
      this.inFlight--;
      for (const run of runs) this.runsInFlight.delete(run);
      this.schedule();
    });
    // More than one push's worth waiting, or an outcome left behind: start the next one now.
    if (this.queuedEvents >= MAX_PUSH_EVENTS || this.queuedNow > 0) this.schedule();
  }

  /**
   * Delivers one push; on a refusal, delivers its runs one by one (each tried once; one the edge
   * refuses again backs off, alone, in `retryLater`). A push larger than MAX_PUSH_BYTES goes out
   * as two, one after the other, so a run's events stay in order.
   */
  private async send(entries: Pending[]): Promise<void> {
    // An earlier entry of the same call was given up (its promise is rejected already): these stay unsent.
    const batch = entries.filter((p) => !p.call.givenUp);
    if (batch.length === 0) return;
    const runs = group(batch);
    // A body JSON.stringify throws on (past V8's largest string, about 512 MiB, or a value JSON has
    // no form for) goes out in parts too, down to the one event it cannot build, given up below:
    // thrown from here, it left every caller of the push waiting for ever, and took the process down.
    let body: string | undefined;
    let unbuildable: unknown;
    try {
      body = JSON.stringify({ runs });
    } catch (err) {
      unbuildable = err;
    }
    const parts = body === undefined || Buffer.byteLength(body) > MAX_PUSH_BYTES ? halves(batch) : null;
    if (parts) {
      /** Runs whose events in an earlier part were given up: their later events are not sent either. */
      const givenUp = new Set<string>();
      for (const part of parts) {
        for (const p of part.filter((p) => givenUp.has(p.workflowId)))
          this.giveUp(p, new Error(`an earlier part of the push of ${p.workflowId}'s events was given up`));
        // A run of this part whose earlier events went back to wait: these wait behind them.
        for (const p of part) if (!p.call.givenUp) this.backingOff.get(p.workflowId)?.push(p);
        const rest = part.filter((p) => !p.call.givenUp && !this.backingOff.has(p.workflowId));
        if (rest.length > 0) await this.send(rest);
        for (const p of rest) if (p.call.givenUp) givenUp.add(p.workflowId);
      }
      return;
    }
    if (body === undefined) {
      const { workflowId, events } = batch[0]!;
      const cause = new Error(`could not build the push of ${workflowId}'s event: ${String(unbuildable)}`);
      this.log(`outrider host: ERROR gave up pushing ${events.length} run events of ${workflowId} to the edge: ${cause.message}`);
      for (const p of batch) this.giveUp(p, cause);
      return;
    }
    // One run the edge refused: one try; a failure waits out its backoff in `retryLater`, off the push slots.
    const once = batch.every((p) => p.alone);
    try {
      const answer = await this.postWithRetry(EDGE_PATHS.runEventsBatch, body, RUN_EVENT_PUSH_ANSWER, {
        runEvents: true,
        ...(once ? { maxAttempts: 1 } : {}),
      });
      this.counters.droppedRuns += answer.dropped ?? 0;
      for (const p of batch) p.resolve();
    } catch (err) {
      if (err instanceof PartialPushError) {
        const failed = new Set(err.failedRuns);
        for (const p of batch) if (!failed.has(p.workflowId)) p.resolve();
        this.retryLater(
          batch.filter((p) => failed.has(p.workflowId)),
          err,
          err.retryAfterMs,
        );
        return;
      }
      if (once) {
        // Its one try's Retry-After too: it bounds the backoff from below, as for any other push.
        this.retryLater(batch, err as Error, err instanceof EdgeBusyError ? err.retryAfterMs : 0);
        return;
      }
      // One run refused: it waits out its backoff alone, off the push slots, like a run refused in
      // a push with others. Retried in place instead, two such runs would hold both slots through
      // all their tries, and every other run's events with them.
      if (err instanceof PushRefusedError && new Set(batch.map((p) => p.workflowId)).size === 1) {
        for (const p of batch) p.alone = true;
        this.retryLater(batch, err);
        return;
      }
      if (!(err instanceof PushRefusedError)) {
        this.log(
          `outrider host: ERROR gave up pushing ${batch.reduce((n, p) => n + p.events.length, 0)} run events to the edge: ${String(err)}`,
        );
        for (const p of batch) this.giveUp(p, err as Error);
        return;
      }
      const byRun = new Map<string, Pending[]>();
      for (const p of batch) {
        p.alone = true;
        byRun.set(p.workflowId, [...(byRun.get(p.workflowId) ?? []), p]);
      }
      // At most SPLIT_PUSHES_AT_ONCE at a time, each taking the next run when it is done: a run the
      // edge keeps refusing holds one of them, not the others, and a push of 200 runs does not
      // become 200 requests at once (each retrying on the same schedule).
      const parts = [...byRun.values()];
      const sendParts = async () => {
        for (let part = parts.shift(); part; part = parts.shift()) await this.send(part);
      };
      await Promise.all(Array.from({ length: Math.min(SPLIT_PUSHES_AT_ONCE, parts.length) }, sendParts));
    }
  }

  /**
   * Entries of runs the edge could not record: back to the front of the queue after a backoff that
   * grows with their failures (and is at least the answer's Retry-After), given up (rejected,
   * logged) after `maxAttempts`. Their runs stay held meanwhile, so the events queued after them
   * wait, and the edge still gets each run's events in order; the push slots are free for other
   * runs. A run goes back only once the push that carried it has ended: a push sent in parts may
   * still hold its later events in a part not sent yet, which must wait behind these (see `send`).
   */
  private retryLater(entries: Pending[], cause: Error, waitAtLeastMs = 0): void {
    const runs = new Set<string>();
    const gaveUp = new Set<string>();
    let failures = 0;
    for (const p of entries) {
      // An earlier entry of its call was given up: rejected already, not sent again.
      if (p.call.givenUp) continue;
      // An earlier entry of its run was given up just now: this one goes with it (see `giveUp`).
      if (gaveUp.has(p.workflowId)) {
        this.giveUp(p, behindGivenUp(p.workflowId, cause));
        continue;
      }
      p.failures++;
      if (p.failures >= this.maxAttempts) {
        this.log(`outrider host: ERROR gave up pushing ${p.events.length} run events of ${p.workflowId} to the edge: ${String(cause)}`);
        this.giveUp(p, cause);
        gaveUp.add(p.workflowId);
        continue;
      }
      runs.add(p.workflowId);
      failures = Math.max(failures, p.failures);
      this.backingOff.set(p.workflowId, [...(this.backingOff.get(p.workflowId) ?? []), p]);
    }
    if (runs.size === 0) return;
    this.log(`${cause.message}: retrying the events of ${runs.size === 1 ? "1 run" : `${runs.size} runs`} (failure ${failures})`);
    this.releaseAfter(runs, Math.max(retryDelay(failures), waitAtLeastMs));
  }

  /**
   * Rejects an entry for good (logged by the caller). The other entries of its call are not sent
   * after it: the edge would get a run's later events without the earlier ones, and could take
   * the run for complete (its closing event in) while they are missing. The relay and the
   * journal push the call's events again, from its start. Nor are the entries of its run that wait
   * behind it (queued while it was on the wire or backing off, by other calls): sent, they would
   * reach the edge before it, which the journal hands over again only at its next redelivery (a
   * step's end before its start, an answer's text out of order). They are given up with it, and
   * the journal hands them over again behind it, in order.
   */
  private giveUp(p: Pending, cause: Error): void {
    p.call.givenUp = true;
    p.reject(cause);
    const queued = this.queue.filter((q) => q.workflowId === p.workflowId);
    if (queued.length > 0) {
      this.queue = this.queue.filter((q) => q.workflowId !== p.workflowId);
      for (const q of queued) {
        this.queuedEvents -= q.events.length;
        if (q.now) this.queuedNow--;
      }
    }
    const behind = [...(this.backingOff.get(p.workflowId) ?? []), ...queued].filter((q) => !q.call.givenUp);
    this.backingOff.delete(p.workflowId);
    if (behind.length === 0) return;
    const why = behindGivenUp(p.workflowId, cause);
    for (const q of behind) {
      q.call.givenUp = true;
      q.reject(why);
    }
  }

  /** Puts the runs' waiting entries back at the front of the queue after `delayMs`, each once its push has ended. */
  private releaseAfter(runs: Set<string>, delayMs: number): void {
    setTimeout(() => {
      const stillOnTheWire = new Set([...runs].filter((run) => this.runsInFlight.has(run)));
      const back: Pending[] = [];
      for (const run of runs) {
        if (stillOnTheWire.has(run)) continue;
        back.push(...(this.backingOff.get(run) ?? []));
        this.backingOff.delete(run);
      }
      if (stillOnTheWire.size > 0) this.releaseAfter(stillOnTheWire, RETRY_BASE_MS);
      this.queue = back.concat(this.queue);
      for (const p of back) {
        this.queuedEvents += p.events.length;
        if (p.now) this.queuedNow++;
      }
      this.schedule();
    }, delayMs);
  }

  /**
   * Posts until the edge takes it; returns the edge's answer, which must read as `expected`. A
   * redirect is not followed, and a 2xx whose body is not that answer is no success either: at the
   * edge's address something else answered (a proxy, an access gateway sending the host to its
   * login page, which answers 200), and the edge recorded nothing. Both are failures, logged and
   * retried: taken for a delivery, the journal would drop a row the edge never got.
   */
  private async postWithRetry<T extends z.ZodType>(
    path: string,
    body: string,
    expected: T,
    { runEvents = false, maxAttempts = this.maxAttempts } = {},
  ): Promise<z.output<T>> {
    let refusals = 0;
    for (let attempt = 1; ; attempt++) {
      let error: Error;
      /** The answer's Retry-After: the next try waits at least that long. */
      let retryAfter = 0;
      try {
        const headers = await signRequest(this.secret, "POST", path, body);
        if (runEvents) this.counters.runEventRequests++;
        const signal = AbortSignal.timeout(this.requestTimeoutMs);
        const res = await fetch(new URL(path, this.edgeUrl), {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body,
          signal,
          redirect: "manual",
        });
        const text = await res.text();
        const answer = res.ok ? expected.safeParse(parseJson(text)) : null;
        if (answer?.success) return answer.data;
        const partial = runEvents && res.status === 503 ? runEventPushPartialFailure.safeParse(parseJson(text)) : null;
        if (partial?.success) {
          throw new PartialPushError(
            `edge recorded a push but for some runs (${res.status})`,
            partial.data.failedRuns,
            answerRetryAfterMs(res),
          );
        }
        if (NOT_THE_PUSH_STATUSES.has(res.status)) {
          // Every push gets this answer (see NOT_THE_PUSH_STATUSES): retried whole, not split.
          this.counters.refused++;
          const hint = res.status === 401 ? " (is the host's HOST_SHARED_SECRET one the edge accepts, and its clock right?)" : "";
          error = new Error(`edge refused ${path}: ${res.status} ${text.slice(0, 300)}${hint}`);
          this.log(`outrider host: ERROR ${error.message} (attempt ${attempt}, retrying)`);
        } else if (res.status >= 400 && res.status < 500 && res.status !== 429) {
          // Refused: the push is wrong (or the edge runs other code than we do). Loud, and retried:
          // a deploy of either side can fix it, and a push is never dropped without a trace.
          this.counters.refused++;
          refusals++;
          error = new PushRefusedError(`edge refused ${path}: ${res.status} ${text.slice(0, 300)}`);
          this.log(`outrider host: ERROR ${error.message} (attempt ${attempt}, retrying)`);
        } else if (res.ok || (res.status >= 300 && res.status < 400)) {
          // Not the edge (see above): a misconfiguration no backoff outlasts by itself, so loud.
          const what = res.ok
            ? `a body that is not the edge's answer: ${text.slice(0, 100)}`
            : `a redirect to ${res.headers.get("location") ?? "(no location)"}, not followed`;
          error = new Error(`edge answered ${res.status} to ${path} with ${what}`);
          this.log(`outrider host: ERROR ${error.message} (attempt ${attempt}, retrying)`);
        } else {
          retryAfter = answerRetryAfterMs(res);
          error = new EdgeBusyError(`edge answered ${res.status} to ${path}`, retryAfter);
          this.log(`${error.message}, retrying${retryAfter > 0 ? ` in ${retryAfter} ms (its Retry-After)` : ""}`);
        }
      } catch (err) {
        if (err instanceof PartialPushError) throw err;
        error = err as Error;
        if (attempt === 1 || attempt % 10 === 0) this.log(`push to edge ${path} failed (${String(err)}), retrying`);
      }
      if (attempt >= maxAttempts) throw error;
      // A push of run events refused more than once is worth splitting, or backing off off the
      // push slots when it is one run's (the caller does either).
      if (runEvents && refusals >= 2 && error instanceof PushRefusedError) throw error;
      await new Promise((r) => setTimeout(r, Math.max(retryDelay(attempt), retryAfter)));
    }
  }
}

/** The wait after a push's `attempt`-th failure: doubling from RETRY_BASE_MS, at most RETRY_MAX_MS. */
function retryDelay(attempt: number): number {
  return Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (attempt - 1));
}

/** The answer's Retry-After in ms (seconds or an HTTP date), at most RETRY_AFTER_MAX_MS; 0 without one it can read. */
const answerRetryAfterMs = (res: Response): number => retryAfterMs((name) => res.headers.get(name), RETRY_AFTER_MAX_MS) ?? 0;

/** Why an entry waiting behind a given-up one of its run is given up too (see `giveUp`). */
function behindGivenUp(workflowId: string, cause: Error): Error {
  return new Error(`an earlier push of ${workflowId}'s events was given up (${cause.message}); these waited behind it`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * A batch in two, in order: its entries halved, or a lone entry's events (the first half resolves
 * nothing, the second resolves the entry). null for a single event, which cannot be split.
 */
function halves(batch: Pending[]): [Pending[], Pending[]] | null {
  if (batch.length > 1) {
    const middle = Math.ceil(batch.length / 2);
    return [batch.slice(0, middle), batch.slice(middle)];
  }
  const only = batch[0]!;
  if (only.events.length < 2) return null;
  const middle = Math.ceil(only.events.length / 2);
  return [[{ ...only, events: only.events.slice(0, middle), resolve: () => undefined }], [{ ...only, events: only.events.slice(middle) }]];
}

/** A run's events, in the order they were handed over, one entry per run. */
function group(batch: Pending[]): Array<{ workflowId: string; events: RunEvent[] }> {
  const runs = new Map<string, RunEvent[]>();
  for (const p of batch) runs.set(p.workflowId, [...(runs.get(p.workflowId) ?? []), ...p.events]);
  return [...runs].map(([workflowId, events]) => ({ workflowId, events }));
}

/** The edge refused a push (4xx): retrying the same bytes will not help unless something changes. */
export class PushRefusedError extends Error {}

/**
 * The edge (or a proxy before it) answered 429 or 5xx, with `retryAfterMs` from its Retry-After (0
 * without one): kept on the error so that a push given one try (a run sent alone) still waits it out.
 */
class EdgeBusyError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
  }
}

/** The edge recorded the push's other runs, not these (`failedRuns` of its 503, whose Retry-After they wait out). */
class PartialPushError extends EdgeBusyError {
  constructor(
    message: string,
    readonly failedRuns: string[],
    retryAfterMs = 0,
  ) {
    super(message, retryAfterMs);
  }
}
