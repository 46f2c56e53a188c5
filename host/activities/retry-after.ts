/**
 * The wait a server asked for before a step's retry (`nextRetryDelay`): a model provider that limits
 * the host's requests, a site that answers 429 or 503. Parsed by src/shared/retry-after.ts, which
 * the edge's webhook deliveries share; capped, so a server cannot hold a step for days.
 */
import { retryAfterMs as parseRetryAfterMs } from "../../src/shared/retry-after.ts";

/** The longest wait a server's Retry-After is followed for; the run's own timeout bounds it anyway. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/** The delay asked for in `get`'s headers, in ms (0 to MAX_RETRY_AFTER_MS), or undefined when none is given or it cannot be read. */
export const retryAfterMs = (get: (name: string) => string | null | undefined): number | undefined =>
  parseRetryAfterMs(get, MAX_RETRY_AFTER_MS);
