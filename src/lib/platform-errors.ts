/**
 * Errors of the platform that a retry a moment later fixes: a Durable Object call Cloudflare marks
 * `retryable` or `overloaded`, and D1's transient errors (its list of errors to retry). Kept apart
 * from the answers made of them (transient-errors.ts, and errors.ts's handleError for a read),
 * which both use it.
 */

/** D1's messages for errors its documentation says to retry. */
const D1_TRANSIENT_MESSAGES = [
  "Network connection lost",
  "storage caused object to be reset",
  "reset because its code was updated",
  "D1 DB is overloaded",
];

/** Seconds a caller waits before trying again after a transient error. */
export const TRANSIENT_RETRY_AFTER_SECONDS = 1;

export function isTransientPlatformError(err: unknown): boolean {
  // Query builders wrap the platform's error: look down the causes too.
  for (let e = err, depth = 0; typeof e === "object" && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { retryable, overloaded, message } = e as { retryable?: unknown; overloaded?: unknown; message?: unknown };
    if (retryable === true || overloaded === true) return true;
    if (typeof message === "string" && D1_TRANSIENT_MESSAGES.some((m) => message.includes(m))) return true;
  }
  return false;
}
