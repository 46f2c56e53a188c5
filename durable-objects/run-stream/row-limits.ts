/**
 * What of a run's outcome fits its D1 row. D1 refuses a row over 2,000,000 bytes (so does a
 * Durable Object's SQLite), and local D1 does not enforce it: these limits keep every finish
 * writable, so a run always reaches its final status (a finish D1 refused would be retried for
 * ever, its credits held). The whole outcome stays in the run's log (its `run.finished`).
 */

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

/** The error as the row stores it: at most MAX_ROW_ERROR_CHARS, with a note of what was cut. */
export function rowError(error: string | null | undefined): string | null {
  if (error === undefined || error === null || error.length <= MAX_ROW_ERROR_CHARS) return error ?? null;
  // Never between the two halves of a surrogate pair.
  const end = /[\uD800-\uDBFF]/.test(error[MAX_ROW_ERROR_CHARS - 1]!) ? MAX_ROW_ERROR_CHARS - 1 : MAX_ROW_ERROR_CHARS;
  return `${error.slice(0, end)}… (${error.length - end} more characters)`;
}
