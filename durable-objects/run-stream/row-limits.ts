/**
 * What of a run's outcome fits its D1 row. D1 refuses a row over 2,000,000 bytes (so does a
 * Durable Object's SQLite), and local D1 does not enforce it: these limits keep every finish
 * writable, so a run always reaches its final status (a finish D1 refused would be retried for
 * ever, its credits held). The whole outcome stays in the run's log (its `run.finished`).
 */
import { cutText, fitsUtf8Bytes } from "../../src/shared/text-limits.ts";
import { cutErrorDetails, type ErrorDetails } from "../../src/shared/error-details.ts";

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
  return fitsUtf8Bytes(json, MAX_ROW_OUTPUT_BYTES) ? { json, inLog: false } : { json: null, inLog: true };
}

/** The most a row's `error_details` holds (UTF-8 bytes): see `rowErrorDetails`. */
export const MAX_ROW_ERROR_DETAILS_BYTES = 64 * 1024;
/** What each message and name of details over MAX_ROW_ERROR_DETAILS_BYTES is cut to. */
const ROW_DETAILS_TEXT_CHARS = 1024;

const fitsRow = (details: ErrorDetails) => fitsUtf8Bytes(JSON.stringify(details), MAX_ROW_ERROR_DETAILS_BYTES);

/**
 * A run's errorDetails as its row, its webhooks and its results keep them: whole when they fit
 * MAX_ROW_ERROR_DETAILS_BYTES; else with every message cut to ROW_DETAILS_TEXT_CHARS; else (text
 * that JSON escapes six-fold) without the cause chain. The log keeps them as the host sent them.
 */
export function rowErrorDetails(details: ErrorDetails | null | undefined): ErrorDetails | null {
  if (!details) return null;
  if (fitsRow(details)) return details;
  const cut = cutErrorDetails(details, ROW_DETAILS_TEXT_CHARS);
  return fitsRow(cut) ? cut : { ...cut, cause: null };
}

/** The error as the row stores it: at most MAX_ROW_ERROR_CHARS, with a note of what was cut. */
export function rowError(error: string | null | undefined): string | null {
  if (error === undefined || error === null) return null;
  return cutText(error, MAX_ROW_ERROR_CHARS);
}
