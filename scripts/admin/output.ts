/** Terminal output of the admin CLI: colours (only on a TTY), tables, key/value blocks. */

function painter(enabled: boolean) {
  const wrap = (open: number, close: number) => (text: string) => (enabled ? `\x1b[${open}m${text}\x1b[${close}m` : text);
  return { bold: wrap(1, 22), dim: wrap(2, 22), red: wrap(31, 39), green: wrap(32, 39), yellow: wrap(33, 39), cyan: wrap(36, 39) };
}

const colourAllowed = () => !process.env.NO_COLOR && process.env.TERM !== "dumb";
/** Colours for stdout, and for stderr: each only when that stream is a terminal. */
export const out = painter(colourAllowed() && process.stdout.isTTY === true);
export const err = painter(colourAllowed() && process.stderr.isTTY === true);

/** Control characters (C0, DEL, C1) but tab and line feed: what can make up a terminal's escape sequences. */
const CONTROL = /(?![\t\n])\p{Cc}/gu;

/**
 * `text` with its control characters written out (`\x1b`): text from a server or a run (a name, a
 * step's error, a model's thinking) must not rewrite the screen, set the clipboard or the title.
 */
export function printable(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** `value` with every string in it made printable (a parsed JSON answer). */
export function printableDeep<T>(value: T): T {
  if (typeof value === "string") return printable(value) as T;
  if (Array.isArray(value)) return value.map(printableDeep) as T;
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [printable(k), printableDeep(v)])) as T;
  return value;
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

const cell = (value: unknown): string => (value === null || value === undefined || value === "" ? "-" : String(value));

/** Aligned columns with a bold header; `empty` is printed instead when there are no rows. */
export function printTable(columns: string[], rows: unknown[][], empty = "(none)"): void {
  if (rows.length === 0) {
    console.log(out.dim(empty));
    return;
  }
  const text = rows.map((row) => row.map(cell));
  const widths = columns.map((c, i) => Math.max(c.length, ...text.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  console.log(out.bold(line(columns)));
  for (const row of text) console.log(line(row));
}

/** `label  value` lines, labels aligned. */
export function printFields(fields: Array<[string, unknown]>): void {
  const width = Math.max(...fields.map(([label]) => label.length));
  for (const [label, value] of fields) console.log(`${out.dim(label.padEnd(width))}  ${cell(value)}`);
}

/** Shortens `text` to one line of at most `max` characters. */
export function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
