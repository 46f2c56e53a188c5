/**
 * What of a run's outcome fits its D1 row. D1 refuses a row over 2,000,000 bytes (so does a
 * Durable Object's SQLite), and local D1 does not enforce it: these limits keep every finish
 * writable, so a run always reaches its final status (a finish D1 refused would be retried for
 * ever, its credits held). The whole outcome stays in the run's log (its `run.finished`).
 */
import type { ErrorCause, ErrorDetails } from "../../src/shared/error-details.ts";

/**
 * The largest output written into the run's D1 row, which also holds the input (up to 1 MiB, the
 * start routes' body limit) and the error: a larger output stays in the log only (`output_in_log`)
 * and readers take it from there; a completion webhook leaves it out (`outputOmitted`).
 */
export const MAX_ROW_OUTPUT_BYTES = 768 * 1024;
/** The longest error message written into the run's row or a step's row; a longer one is cut, saying so (the log keeps it whole). */
export const MAX_ROW_ERROR_CHARS = 16 * 1024;

/** The output as the row stores it: its JSON, or NULL (none, or too large: then `inLog`). */
export function rowOutput(output: unknown): { json: string | null; inLog: boolean } {
  if (output === undefined || output === null) return { json: null, inLog: false };
  const json = JSON.stringify(output);
  // UTF-8 takes at most 3 bytes per UTF-16 unit: only a long text needs counting.
  if (json.length * 3 <= MAX_ROW_OUTPUT_BYTES || new TextEncoder().encode(json).byteLength <= MAX_ROW_OUTPUT_BYTES)
    return { json, inLog: false };
  return { json: null, inLog: true };
}

/** The most a row's `error_details` holds (UTF-8 bytes); longer details have their messages cut to MAX_DETAILS_MESSAGE_CHARS. */
export const MAX_ROW_ERROR_DETAILS_BYTES = 64 * 1024;
const MAX_DETAILS_MESSAGE_CHARS = 1024;

/**
 * A run's errorDetails as the row stores them: whole when they fit MAX_ROW_ERROR_DETAILS_BYTES,
 * else with every message cut (a chain is at most 11 links deep, so that always fits); the log
 * keeps them whole. NULL when there are none.
 */
export function rowErrorDetails(details: ErrorDetails | null | undefined): string | null {
  if (!details) return null;
  const json = JSON.stringify(details);
  if (json.length * 3 <= MAX_ROW_ERROR_DETAILS_BYTES || new TextEncoder().encode(json).byteLength <= MAX_ROW_ERROR_DETAILS_BYTES)
    return json;
  const cut = (message: string | null) => (message === null ? null : cutText(message, MAX_DETAILS_MESSAGE_CHARS));
  const cutCause = (cause: ErrorCause): ErrorCause => ({
    name: cutText(cause.name, MAX_DETAILS_MESSAGE_CHARS),
    message: cut(cause.message),
    ...(cause.cause ? { cause: cutCause(cause.cause) } : {}),
  });
  return JSON.stringify({
    ...details,
    message: cut(details.message),
    name: details.name === null ? null : cutText(details.name, MAX_DETAILS_MESSAGE_CHARS),
    activityId: details.activityId === null ? null : cutText(details.activityId, MAX_DETAILS_MESSAGE_CHARS),
    cause: details.cause ? cutCause(details.cause) : null,
  });
}

/** The error as the row stores it: at most MAX_ROW_ERROR_CHARS, with a note of what was cut. */
export function rowError(error: string | null | undefined): string | null {
  if (error === undefined || error === null) return null;
  return cutText(error, MAX_ROW_ERROR_CHARS);
}

/** At most `max` characters of `text`, saying how many more there were; never between the two halves of a surrogate pair. */
function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const end = /[\uD800-\uDBFF]/.test(text[max - 1]!) ? max - 1 : max;
  return `${text.slice(0, end)}… (${text.length - end} more characters)`;
}
