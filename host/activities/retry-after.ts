/**
 * The wait a server asked for before a retry (`Retry-After`, in seconds or as an HTTP date; OpenAI's
 * `retry-after-ms`), for a step's `nextRetryDelay`: a model provider that limits the host's
 * requests, a site that answers 429 or 503. Capped, so a server cannot hold a step for days.
 */

/** The longest wait a server's Retry-After is followed for; the run's own timeout bounds it anyway. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/** The delay asked for in `get`'s headers, in ms (0 to MAX_RETRY_AFTER_MS), or undefined when none is given or it cannot be read. */
export function retryAfterMs(get: (name: string) => string | null | undefined): number | undefined {
  const msText = get("retry-after-ms")?.trim();
  const ms = Number(msText);
  if (msText && Number.isFinite(ms) && ms >= 0) return Math.min(ms, MAX_RETRY_AFTER_MS);
  const value = get("retry-after")?.trim();
  if (!value) return undefined;
  const delayMs = /^\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(delayMs) ? Math.min(Math.max(0, delayMs), MAX_RETRY_AFTER_MS) : undefined;
}
