/**
 * RateLimiter: one Durable Object per API key. A Durable Object handles one request at a time
 * (no awaits in `hit`), so counts are exact under any concurrency: a burst of five times the limit
 * admits exactly the limit.
 *
 * The window slides: a request is admitted only while fewer than `limit` were admitted in the
 * `windowSeconds` before it, so no span of that length ever holds more than the limit (fixed
 * windows aligned to the clock let twice the limit through across a window's edge). A fresh key may
 * spend its whole limit at once; after that each request comes back when the window has slid past
 * it, so a key that spends its limit at once waits the window out, and one that spreads its requests
 * gets them back one by one. Hits are kept counted by the second (at most `windowSeconds` + 1
 * counts, whatever the limit: a key may allow a million a minute), and a second's hits count until
 * the window has slid past that whole second: each request is released 60 to 61 s after it was
 * made, never sooner. Kept in the object's synchronous KV storage, so an eviction forgets nothing.
 *
 * The same object holds its key's open streams (rate-limiter/stream-leases.ts): a key may hold
 * MAX_OPEN_STREAMS_PER_KEY at once, whichever runs and routes they are on.
 *
 * Keys come and go (one per API key, and one per run whose stream tokens are used, one per JWT
 * subject): the first request counted sets an alarm for its release (or a held lease's expiry,
 * when that comes sooner), each alarm sets the next for what is still counted or held, and the alarm
 * deletes the object's storage once no request counts and no lease is held, so a key no longer used
 * leaves nothing stored.
 */
import { DurableObject } from "cloudflare:workers";
import { type StreamLeaseDecision, StreamLeases } from "./rate-limiter/stream-leases.ts";

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  /** Requests that would be admitted now, after this one. */
  remaining: number;
  /** Unix seconds when every request counted so far is released: the whole limit is back. */
  resetAt: number;
  /** Whole seconds until a request alone on the key is admitted: 0 while `remaining` is above 0. */
  retryAfter: number;
}

export class RateLimiter extends DurableObject<Env> {
  private readonly streams = new StreamLeases(this.ctx.storage.kv);
  /** WINDOW_KEY was looked for since this object woke (nothing writes it again): one read per wake, not per request. */
  private fixedWindowRead = false;

  /** Counts one request against `limit` (at least 1) in any `windowSeconds`. */
  hit(limit: number, windowSeconds: number, now: number = Date.now()): RateLimitDecision {
    const counted = this.countedHits(now);
    let inWindow = counted.reduce((sum, [, hits]) => sum + hits, 0);
    const allowed = inWindow < limit;
    if (allowed) {
      const releasedAt = releaseOf(now, windowSeconds * 1000);
      const newest = counted.at(-1);
      if (newest?.[0] === releasedAt) newest[1]++;
      else counted.push([releasedAt, 1]);
      this.ctx.storage.kv.put(HITS_KEY, counted);
      // The first request counted: an alarm must come for its release, unless a lease expires sooner
      // (that lease's alarm sets the next one, which is then at most this release).
      if (inWindow === 0) void this.ctx.storage.setAlarm(Math.min(releasedAt, this.streams.nextExpiry() ?? releasedAt));
      inWindow++;
    }
    const remaining = Math.max(0, limit - inWindow);
    return {
      allowed,
      limit,
      remaining,
      resetAt: Math.ceil((counted.at(-1)?.[0] ?? now) / 1000),
      retryAfter: remaining > 0 ? 0 : Math.ceil((admittedAgainAt(counted, inWindow - limit + 1) - now) / 1000),
    };
  }

  /**
   * A stream connect's one call: counts the request (`hit`) and, if it is allowed, takes a stream
   * place for `leaseId` (`openStream`, capped). A refused request takes no place.
   */
  async hitAndOpenStream(
    limit: number,
    windowSeconds: number,
    leaseId: string,
    max: number,
    now: number = Date.now(),
  ): Promise<{ rate: RateLimitDecision; stream: StreamLeaseDecision | null }> {
    const rate = this.hit(limit, windowSeconds, now);
    if (!rate.allowed) return { rate, stream: null };
    return { rate, stream: await this.openStream(leaseId, max, true, now) };
  }

  /** Takes one of the key's `max` stream places for `leaseId` (StreamLeases.open). */
  async openStream(leaseId: string, max: number, capped = true, now: number = Date.now()): Promise<StreamLeaseDecision> {
    const decision = this.streams.open(leaseId, max, capped, now);
    if (decision.allowed) await this.armForLeases();
    return decision;
  }

  /** Keeps a stream's lease (one that expired meanwhile is taken again: its stream is open). */
  async renewStream(leaseId: string, now: number = Date.now()): Promise<void> {
    this.streams.renew(leaseId, now);
    await this.armForLeases();
  }

  closeStream(leaseId: string): void {
    this.streams.close(leaseId);
  }

  /**
   * A lease is held: some alarm must come to sweep it. One already set (the release of the counted
   * requests, an earlier lease's expiry) sweeps and sets the next; with none (a new object, or one
   * the alarm emptied before a renewal came back), one is set for this lease's expiry.
   */
  private async armForLeases(): Promise<void> {
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(this.streams.nextExpiry()!);
  }

  /**
   * Counted requests may have been released or a lease may have expired: expired leases go, and the
   * released requests; the alarm is set again for what is left, and with nothing left the object's
   * storage goes.
   */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.streams.sweep(now);
    const counted = this.countedHits(now);
    const hitsEnd = counted.at(-1)?.[0] ?? null;
    if (hitsEnd === null) this.ctx.storage.kv.delete(HITS_KEY);
    const leaseEnd = this.streams.nextExpiry();
    const next = hitsEnd === null ? leaseEnd : leaseEnd === null ? hitsEnd : Math.min(hitsEnd, leaseEnd);
    if (next === null) await this.ctx.storage.deleteAll();
    else await this.ctx.storage.setAlarm(next);
  }

  /**
   * The requests that still count at `now`, oldest first (released ones dropped; the caller writes
   * what it changes). A window stored by the fixed-window code before it (WINDOW_KEY) is read once
   * and replaced: its hits count as made at the latest moment they can have been, now or the last
   * moment of their window, so the limit holds across the deploy (a key that had spent its window
   * just before waits up to 61 s, once).
   */
  private countedHits(now: number): StoredHits {
    const kv = this.ctx.storage.kv;
    const old = this.fixedWindowRead ? undefined : kv.get<FixedWindow>(WINDOW_KEY);
    this.fixedWindowRead = true;
    if (old) {
      kv.delete(WINDOW_KEY);
      // Windows stored before `windowEnd` existed have none: they are long over.
      if (old.windowEnd !== undefined) {
        const releasedAt = releaseOf(Math.min(now, old.windowEnd - 1), old.windowEnd - old.windowStart);
        if (releasedAt > now) kv.put(HITS_KEY, [[releasedAt, old.count]] satisfies StoredHits);
      }
    }
    return (kv.get<StoredHits>(HITS_KEY) ?? []).filter(([releasedAt]) => releasedAt > now);
  }
}

/** Requests are counted by the second: each is released on a whole second, 60 to 61 s after it was made. */
const SECOND_MS = 1000;

/** When a request made at `madeAt` stops counting: once the window has slid past the whole second it was made in. */
function releaseOf(madeAt: number, windowMs: number): number {
  return Math.floor(madeAt / SECOND_MS) * SECOND_MS + SECOND_MS + windowMs;
}

/**
 * When enough of the counted requests (oldest first) are released for `over` fewer to count: the
 * first moment the next request is admitted.
 */
function admittedAgainAt(counted: StoredHits, over: number): number {
  let released = 0;
  for (const [releasedAt, hits] of counted) {
    released += hits;
    if (released >= over) return releasedAt;
  }
  // Only a limit below 1 asks for more than are counted: nothing is ever admitted then.
  return counted.at(-1)?.[0] ?? 0;
}

const HITS_KEY = "hits";

/** [when they are released (ms), how many], oldest first: the requests made in one second. */
type StoredHits = Array<[releasedAt: number, hits: number]>;

/** The fixed-window code's storage, before HITS_KEY: read once and replaced (countedHits). */
const WINDOW_KEY = "window";

interface FixedWindow {
  windowStart: number;
  windowEnd?: number;
  count: number;
}
