import type { Context } from "hono";
import type { AppEnv } from "../app-env.ts";
import { ApiError } from "../errors.ts";
import { singleQueryValue } from "../middleware/query/index.ts";

/**
 * The header wins over the query (EventSource sets it on reconnect); a repeated query is 400 either
 * way. An empty header names no event (EventSource sends none then), so it does not hide the
 * query's id: that would replay the whole stream to a client that has part of it.
 */
function lastEventIdText(c: Context): string | undefined {
  const fromQuery = singleQueryValue(c, "lastEventId");
  return c.req.header("last-event-id") || fromQuery;
}

/**
 * A log stream's cursor that may also say the client saw the run's end: `<seq>` (an entry's id)
 * or `<seq>.end` (the id of the final frame, sent after the entry with id `<seq>`: the Workflow
 * Runs API's `result` or `error`, the run viewer's `done` of a run that never started). Null when
 * there is none; 400 when it is neither.
 */
export function parseLogCursor(c: Context<AppEnv>): { afterSeq: number; sawEnd: boolean } | null {
  const raw = lastEventIdText(c);
  if (raw === undefined || raw === "") return null;
  const match = /^(\d{1,15})(\.end)?$/.exec(raw);
  if (!match) {
    throw new ApiError("invalid_request", "Last-Event-ID must be a log sequence number (a non-negative integer) or <n>.end", [
      { path: "lastEventId", message: "expected <n> or <n>.end" },
    ]);
  }
  return { afterSeq: Number(match[1]), sawEnd: match[2] !== undefined };
}

/** The id of a log stream's final frame: the client has every entry through `seq`, and the end. */
export const logEndId = (seq: number) => `${seq}.end`;

/**
 * The history stream's cursor: `<eventId>` (a `history` frame: the Temporal event id of its last
 * event) or `<eventId>.<seq>` (a `thinking` frame: the last Temporal event id sent before it, and
 * the thinking entry's log seq). Null when there is none; 400 when it is neither.
 */
export function parseHistoryCursor<E extends AppEnv>(c: Context<E>): { eventId: number; cursor: string } | null {
  const raw = lastEventIdText(c);
  if (raw === undefined || raw === "") return null;
  const match = /^(\d{1,15})(?:\.(\d{1,15}))?$/.exec(raw);
  if (!match) {
    throw new ApiError(
      "invalid_request",
      "Last-Event-ID must be a Temporal event id (a non-negative integer), or the id of a thinking event (<eventId>.<n>)",
      [{ path: "lastEventId", message: "expected <eventId> or <eventId>.<n>" }],
    );
  }
  return {
    eventId: Number(match[1]),
    cursor: match[2] === undefined ? String(Number(match[1])) : `${Number(match[1])}.${Number(match[2])}`,
  };
}
