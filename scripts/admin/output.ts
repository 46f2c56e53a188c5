/** Terminal output of the admin CLI: colours (only on a TTY), tables, key/value blocks. */

function painter(enabled: boolean) {
  const wrap = (open: number, close: number) => (text: string) => (enabled ? `\x1b[${open}m${text}\x1b[${close}m` : text);
  return { bold: wrap(1, 22), dim: wrap(2, 22), red: wrap(31, 39), green: wrap(32, 39), yellow: wrap(33, 39), cyan: wrap(36, 39) };
}

const colourAllowed = () => !process.env.NO_COLOR && process.env.TERM !== "dumb";
/** Colours for stdout, and for stderr: each only when that stream is a terminal. */
export const out = painter(colourAllowed() && process.stdout.isTTY === true);
export const err = painter(colourAllowed() && process.stderr.isTTY === true);

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
