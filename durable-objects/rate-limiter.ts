/**
 * RateLimiter: one Durable Object per API key. A Durable Object handles one request at a time
 * (no awaits here), so counts are exact under any concurrency: a burst of five times the limit
 * admits exactly the limit. Fixed windows, kept in the object's synchronous KV storage so an
 * eviction does not reset a window.
 *
 * Keys come and go (one per API key, and one per run whose stream tokens are used, one per JWT
 * subject): a window's first request sets an alarm at its end, which deletes the object's storage
 * if no later window has begun, so a key no longer used leaves nothing stored.
 */
import { DurableObject } from "cloudflare:workers";

export interface RateLimitDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Unix seconds when the current window ends. */
  resetAt: number;
}

export class RateLimiter extends DurableObject<Env> {
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

  /** A window ended: its count goes, and with it the object's storage, unless a later window began. */
  override async alarm(): Promise<void> {
    const current = this.ctx.storage.kv.get<StoredWindow>(WINDOW_KEY);
    if (current && current.windowEnd > Date.now()) return; // a later window's own alarm comes at its end
    await this.ctx.storage.deleteAll();
  }
}

const WINDOW_KEY = "window";

interface StoredWindow {
  windowStart: number;
  /** Windows stored before this field existed have none: their alarm deletes them. */
  windowEnd: number;
  count: number;
}
