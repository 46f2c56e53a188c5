/**
 * The wait a server asked for before a retry: `Retry-After` in seconds or as an HTTP date, or
 * OpenAI's `retry-after-ms`. Read by the host's steps (a model provider or site that answers 429
 * or 503) and by the edge's webhook deliveries (a receiver that does). Capped by the caller, so a
 * server cannot hold a retry for days.
 */

/** The delay asked for in `get`'s headers, in ms (0 to `maxMs`), or undefined when none is given or it cannot be read. */
export function retryAfterMs(get: (name: string) => string | null | undefined, maxMs: number, now = Date.now()): number | undefined {
  const msText = get("retry-after-ms")?.trim();
  const ms = Number(msText);
  if (msText && Number.isFinite(ms) && ms >= 0) return Math.min(ms, maxMs);
  const value = get("retry-after")?.trim();
  if (!value) return undefined;
  const delayMs = /^\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : Date.parse(value) - now;
  return Number.isFinite(delayMs) ? Math.min(Math.max(0, delayMs), maxMs) : undefined;
}
