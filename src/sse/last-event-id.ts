import type { Context } from "hono";
import type { AppEnv } from "../app-env.ts";
import { ApiError } from "../errors.ts";

/**
 * The id a reconnecting client last saw: `Last-Event-ID` (EventSource sends it) or
 * `?lastEventId=` (for clients that cannot set headers). Null when there is none; 400 when it is
 * not an id. `meaning` names what the stream's ids are, for the error message.
 */
export function parseLastEventId(c: Context<AppEnv>, meaning: string): number | null {
  const raw = c.req.header("last-event-id") ?? c.req.query("lastEventId");
  if (raw === undefined || raw === "") return null;
  if (!/^\d{1,15}$/.test(raw)) {
    throw new ApiError("invalid_request", `Last-Event-ID must be ${meaning} (a non-negative integer)`, [
      { path: "lastEventId", message: "expected a non-negative integer" },
    ]);
  }
  return Number(raw);
}
