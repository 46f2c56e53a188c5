/**
 * RateLimiter: one Durable Object per API key. A Durable Object handles one request at a time
 * (no awaits here), so counts are exact under any concurrency: a burst of five times the limit
 * admits exactly the limit. Fixed windows, kept in the object's synchronous KV storage so an
 * eviction does not reset a window.
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
    const current = kv.get<{ windowStart: number; count: number }>("window");
    const count = current && current.windowStart === windowStart ? current.count : 0;
    const resetAt = Math.ceil((windowStart + windowMs) / 1000);
    if (count >= limit) return { allowed: false, limit, remaining: 0, resetAt };
    kv.put("window", { windowStart, count: count + 1 });
    return { allowed: true, limit, remaining: limit - count - 1, resetAt };
  }
}
