/**
 * A log entry too large for one row of the DO's SQLite, which (like D1) refuses a row over
 * 2,000,000 bytes: a history event whose payload is near Temporal's 2 MiB limit, or a run's
 * output as large, sent as one `run.finished`. Its JSON is kept in `event_parts`, in pieces that
 * each fit, and the `events` row says how many (`parts`) with `data` holding `null` (valid JSON,
 * so a `json_extract` over the log reads NULL there, not an error: the log's lookups by JSON field
 * are of `run.started` and a continue-as-new's `run.finished`, which are never this large). Without this, such an event failed its append
 * on every push: the run never finished at the edge. Local workerd does not enforce the limit, so
 * the tests check what each row holds.
 */
import { fitsUtf8Bytes, wholeCharsEnd } from "../../src/shared/text-limits.ts";

/** The most of an entry's JSON kept in its own row (UTF-8 bytes; the row holds its keys too). */
export const MAX_LOG_ROW_DATA_BYTES = 1024 * 1024;
/** Characters per piece: at most 3 bytes each in UTF-8, so a piece stays under 768 KiB. */
export const LOG_PART_CHARS = 256 * 1024;

export const EVENT_PARTS_TABLE = `CREATE TABLE IF NOT EXISTS event_parts (
  seq INTEGER NOT NULL,
  part INTEGER NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (seq, part)
) WITHOUT ROWID`;

/** The `data` an entry kept in pieces has in its own row. */
export const DATA_IN_PARTS = "null";

/** null when the JSON fits its row; else its pieces, never split between the halves of a surrogate pair. */
export function piecesOf(json: string): string[] | null {
  if (fitsUtf8Bytes(json, MAX_LOG_ROW_DATA_BYTES)) return null;
  const pieces: string[] = [];
  for (let start = 0; start < json.length; ) {
    // A high surrogate at the cut goes with its low half into the next piece.
    const end = wholeCharsEnd(json, Math.min(start + LOG_PART_CHARS, json.length));
    pieces.push(json.slice(start, end));
    start = end;
  }
  return pieces;
}
