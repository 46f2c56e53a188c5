/**
 * RateLimiter: one Durable Object per API key. A Durable Object handles one request at a time
 * (no awaits here), so counts are exact under any concurrency: a burst of five times the limit
 * admits exactly the limit. Fixed windows, kept in the object's synchronous KV storage so an
 * eviction does not reset a window.
 *
 * The same object holds its key's open streams (rate-limiter/stream-leases.ts): a key may hold
 * MAX_OPEN_STREAMS_PER_KEY at once, whichever runs and routes they are on.
 *
 * Keys come and go (one per API key, and one per run whose stream tokens are used, one per JWT
 * subject): a window's first request sets an alarm at its end, and the alarm deletes the object's
 * storage once no window is going and no lease is held, so a key no longer used leaves nothing
 * stored.
 */
import { DurableObject } from "cloudflare:workers";
import { type StreamLeaseDecision, StreamLeases } from "./rate-limiter/stream-leases.ts";

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Unix seconds when the current window ends. */
  resetAt: number;
}

export class RateLimiter extends DurableObject<Env> {
  private readonly streams = new StreamLeases(this.ctx.storage.kv);

  /** Counts one request against `limit` per `windowSeconds`. */
  hit(limit: number, windowSeconds: number, now: number = Date.now()): RateLimitDecision {
    const windowMs = windowSeconds * 1000;
    const windowStart = Math.floor(now / windowMs) * windowMs;
    const kv = this.ctx.storage.kv;
    const current = kv.get<StoredWindow>(WINDOW_KEY);
    const count = current && current.windowStart === windowStart ? current.count : 0;
    const resetAt = Math.ceil((windowStart + windowMs) / 1000);
    if (count >= limit) return { allowed: false, limit, remaining: 0, resetAt };
    kv.put(WINDOW_KEY, { windowStart, windowEnd: windowStart + windowMs, count: count + 1 });
    if (count === 0) void this.ctx.storage.setAlarm(windowStart + windowMs);
    return { allowed: true, limit, remaining: limit - count - 1, resetAt };
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
   * A lease is held: some alarm must come to sweep it. One already set (a window's end, an earlier
   * lease's expiry) sweeps and sets the next; with none (a new object, or one the alarm emptied
   * before a renewal came back), one is set for this lease's expiry.
   */
  private async armForLeases(): Promise<void> {
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(this.streams.nextExpiry()!);
  }

  /**
   * A window ended or a lease may have expired: expired leases go, then the ended window; the alarm
   * is set again for what is left, and with nothing left the object's storage goes.
   */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.streams.sweep(now);
    const kv = this.ctx.storage.kv;
    const current = kv.get<StoredWindow>(WINDOW_KEY);
    // Windows stored before `windowEnd` existed have none: they are over.
    const windowEnd = current && current.windowEnd > now ? current.windowEnd : null;
    if (current && windowEnd === null) kv.delete(WINDOW_KEY);
    const leaseEnd = this.streams.nextExpiry();
    const next = windowEnd === null ? leaseEnd : leaseEnd === null ? windowEnd : Math.min(windowEnd, leaseEnd);
    if (next === null) await this.ctx.storage.deleteAll();
    else await this.ctx.storage.setAlarm(next);
  }
}

const WINDOW_KEY = "window";

interface StoredWindow {
  windowStart: number;
  /** Windows stored before this field existed have none: their alarm deletes them. */
  windowEnd: number;
  count: number;
}
