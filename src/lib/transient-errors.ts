/**
 * Errors of the platform that a retry a moment later fixes: a Durable Object call Cloudflare marks
 * `retryable` or `overloaded`, and D1's transient errors (its list of errors to retry). Answered as
 * 503 `service_unavailable` with Retry-After, which promises just that, where the call only reads
 * (auth, the rate limit): a retry cannot do anything twice.
 */
import { briefOutageError } from "../errors.ts";
import { isTransientPlatformError } from "./platform-errors.ts";

/** `read()`, with a transient platform error turned into 503 `service_unavailable` naming `what`. */
export async function unavailableOnTransient<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (!isTransientPlatformError(err)) throw err;
    console.warn(JSON.stringify({ level: "warn", message: `${what}: transient platform error`, error: String(err) }));
    throw briefOutageError(what);
  }
}
