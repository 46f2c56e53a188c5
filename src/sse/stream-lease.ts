/**
 * A stream's place among its API key's open streams (durable-objects/rate-limiter/stream-leases.ts):
 * taken when the stream opens, renewed while it lasts, given back when it ends. A key holds at
 * most MAX_OPEN_STREAMS_PER_KEY at once over every stream route and run; the next stream is 429
 * `too_many_streams` with Retry-After until one ends. A stream token's stream counts against the
 * key that minted it, so minting tokens opens no more streams than the key itself may.
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { AppEnv, AuthContext } from "../app-env.ts";
import { STREAM_LEASE_RENEW_MS, type StreamLeaseDecision } from "../../durable-objects/rate-limiter/stream-leases.ts";
import { ApiError } from "../errors.ts";
import { unavailableOnTransient } from "../lib/transient-errors.ts";
import { positiveNumberVar } from "../shared/positive-number-var.ts";

/** Open streams an API key may hold (overridable: MAX_OPEN_STREAMS_PER_KEY); twice what one run takes by default. */
export const DEFAULT_MAX_OPEN_STREAMS_PER_KEY = 20_000;
/** What a refused stream is told to wait: streams end all the time, so a place comes free soon or not for long. */
const FULL_KEY_RETRY_AFTER_SECONDS = 5;

export interface StreamLease {
  /** Gives the place back (once; later calls do nothing). */
  release(): void;
}

/** The key whose RateLimiter counts a stream: the API key, the key that minted a stream token, or the caller's rate-limit key. */
function leaseOwner(auth: AuthContext | undefined): string | undefined {
  return auth?.apiKeyId ?? auth?.streamToken?.apiKeyId ?? auth?.rateLimitKey;
}

/** How many streams a key may hold: a whole number, at least 1 (a fraction such as 0.5 must not refuse every stream). */
function maxOpenStreams(env: Env): number {
  return Math.max(1, Math.floor(positiveNumberVar(env.MAX_OPEN_STREAMS_PER_KEY, DEFAULT_MAX_OPEN_STREAMS_PER_KEY)));
}

/**
 * Marks a route whose GET (and HEAD) opens a capped stream. Registered before rateLimit(), so that
 * the rate limit's call to the key's RateLimiter takes the stream's place too: a connect makes one
 * call to it, not two in a row (`leaseToTakeWithHit`).
 */
export const opensStream = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD") c.set("opensStream", true);
    await next();
  });

/** A place taken by rateLimit()'s call, for the route's takeStreamLease to claim. */
export interface EarlyStreamLease {
  leaseId: string;
  decision: StreamLeaseDecision;
  claimed: boolean;
}

/**
 * For rateLimit(): the place to take in the same call as the hit, when this request opens a capped
 * stream (`opensStream`) counted in the same RateLimiter as its rate limit (an API key, a JWT
 * subject, an internal caller; not a stream token, whose rate limit is its run's). Null otherwise.
 */
export function leaseToTakeWithHit<E extends AppEnv>(c: Context<E>, limitedKey: string): { leaseId: string; max: number } | null {
  if (!c.get("opensStream") || leaseOwner(c.get("auth")) !== limitedKey) return null;
  return { leaseId: crypto.randomUUID(), max: maxOpenStreams(c.env) };
}

/**
 * For rateLimit(), after the route: a place taken with the hit that no stream claimed (the route
 * answered 400, 404, 204 ...) is given back.
 */
export function releaseUnclaimedLease<E extends AppEnv>(c: Context<E>, limiter: ReturnType<Env["RATE_LIMITER"]["get"]>): void {
  const early = c.get("earlyStreamLease");
  if (!early || early.claimed || !early.decision.allowed) return;
  early.claimed = true;
  const closing = limiter.closeStream(early.leaseId).catch(() => undefined);
  try {
    c.executionCtx.waitUntil(closing);
  } catch {
    /* no execution context (a test's app.request): the call goes on by itself */
  }
}

/**
 * Takes a place for the stream this request opens. `capped: false` for a streaming start, whose
 * run the request has already started: it counts, but is never refused (the organization's open
 * runs bound those), so nothing waits for it. Null when the request has no key to count against.
 *
 * A capped lease must be taken before the subscription opens, not alongside it: the DO sends the
 * backlog as soon as it accepts, and a WebSocket's messages that arrive before the stream listens
 * to it (while this call were still in flight) would be lost.
 */
export async function takeStreamLease<E extends AppEnv>(c: Context<E>, options: { capped: boolean }): Promise<StreamLease | null> {
  const owner = leaseOwner(c.get("auth"));
  if (!owner) return null;
  const limiter = c.env.RATE_LIMITER.get(c.env.RATE_LIMITER.idFromName(owner));
  // Taken already, with the rate limit's hit (opensStream): the decision is in hand.
  const pending = c.get("earlyStreamLease");
  const early = options.capped && pending && !pending.claimed ? pending : undefined;
  if (early) early.claimed = true;
  const leaseId = early?.leaseId ?? crypto.randomUUID();
  const opening = early ? Promise.resolve(early.decision) : limiter.openStream(leaseId, maxOpenStreams(c.env), options.capped);
  if (!options.capped) {
    // Never refused, so not waited for: a call that fails leaves this stream uncounted, never closed.
    opening.catch(() => undefined);
  } else {
    const decision = await unavailableOnTransient("the stream counter", () => opening);
    if (!decision.allowed)
      throw new ApiError(
        "too_many_streams",
        `this API key has ${decision.max} open streams, the most it may hold at once (stream tokens it minted included); close one or try again later`,
        undefined,
        { "retry-after": String(FULL_KEY_RETRY_AFTER_SECONDS) },
      );
  }
  // A renewal that fails is tried at the next tick; three in a row must fail before the lease expires.
  const renewal = setInterval(() => void limiter.renewStream(leaseId).catch(() => undefined), STREAM_LEASE_RENEW_MS);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      clearInterval(renewal);
      // After the open, whatever became of it: an open whose answer was lost may have taken the
      // place, and a renewal may have taken it again since. A close that fails leaves it to expire.
      const closing = opening
        .catch(() => undefined)
        .then(() => limiter.closeStream(leaseId))
        .catch(() => undefined);
      try {
        c.executionCtx.waitUntil(closing);
      } catch {
        /* no execution context (a test's app.request): the call goes on by itself */
      }
    },
  };
}
