/**
 * Per-key rate limits, enforced by the key's RateLimiter Durable Object: at most the limit in any
 * 60 s (a window that slides, not one aligned to the clock). Every response to an authenticated
 * request carries `x-ratelimit-limit`, `x-ratelimit-remaining` (requests admitted now) and
 * `x-ratelimit-reset` (Unix seconds when the whole limit is back); a refused one is 429
 * `rate_limited` with `Retry-After`, the seconds until a request is admitted again (each request
 * counts for 60 s after it, so a key that spent its limit in a burst waits the minute out; one that
 * spread its requests gets one back as soon as its oldest counted one is 60 s old). A key's own
 * `rate_limit_per_minute` wins over RATE_LIMIT_PER_MINUTE.
 */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { unavailableOnTransient } from "../../lib/transient-errors.ts";
import { positiveNumberVar } from "../../shared/positive-number-var.ts";
import { RATE_LIMIT_WINDOW_SECONDS } from "../../shared/rate-limit-window.ts";
import { leaseToTakeWithHit, releaseUnclaimedLease } from "../../sse/stream-lease.ts";

const DEFAULT_PER_MINUTE = 600;

/**
 * RATE_LIMIT_PER_MINUTE as a whole number of requests, at least 1: a fraction counted down went
 * below zero in `x-ratelimit-remaining`, and a negative or unreadable value refused every request.
 */
function defaultPerMinute(env: Env): number {
  return Math.max(1, Math.floor(positiveNumberVar(env.RATE_LIMIT_PER_MINUTE, DEFAULT_PER_MINUTE)));
}

export const rateLimit = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const auth = c.get("auth");
    // A stream token counts against its run (streamTokenRateLimitKey).
    const limitedKey = auth?.rateLimitKey ?? auth?.apiKeyId;
    if (!limitedKey) return next();
    const limit = auth!.rateLimitPerMinute ?? defaultPerMinute(c.env);
    const limiter = c.env.RATE_LIMITER.get(c.env.RATE_LIMITER.idFromName(limitedKey));
    // A stream connect counted in this same RateLimiter takes its stream's place in this call too.
    const lease = leaseToTakeWithHit(c, limitedKey);
    const decision = lease
      ? await unavailableOnTransient("the rate limiter", async () => {
          const both = await limiter.hitAndOpenStream(limit, RATE_LIMIT_WINDOW_SECONDS, lease.leaseId, lease.max);
          if (both.stream) c.set("earlyStreamLease", { leaseId: lease.leaseId, decision: both.stream, claimed: false });
          return both.rate;
        })
      : await unavailableOnTransient("the rate limiter", () => limiter.hit(limit, RATE_LIMIT_WINDOW_SECONDS));
    const headers = {
      "x-ratelimit-limit": String(decision.limit),
      "x-ratelimit-remaining": String(decision.remaining),
      "x-ratelimit-reset": String(decision.resetAt),
    };
    if (!decision.allowed) {
      // Counted by the RateLimiter on its own clock, not this Worker's. A RateLimiter still on the
      // fixed-window code while a deploy rolls out sends none: its window's end is when it admits again.
      const retryAfter = Math.max(1, decision.retryAfter ?? decision.resetAt - Math.floor(Date.now() / 1000));
      throw new ApiError(
        "rate_limited",
        `rate limit of ${decision.limit} requests in any 60 s reached (each request counts for 60 s after it); retry after ${retryAfter} s`,
        undefined,
        {
          ...headers,
          "retry-after": String(retryAfter),
        },
      );
    }
    try {
      await next();
    } finally {
      releaseUnclaimedLease(c, limiter);
    }
    for (const [name, value] of Object.entries(headers)) c.res.headers.set(name, value);
  });
