/** Command-line parsing (node:util parseArgs) shared by every command. */
import { parseArgs } from "node:util";
import { CliError } from "./errors.ts";

export const OPTIONS = {
  url: { type: "string" },
  "admin-key": { type: "string" },
  "internal-secret": { type: "string" },
  "api-key": { type: "string" },
  json: { type: "boolean" },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h" },
  name: { type: "string" },
  id: { type: "string" },
  "rate-limit": { type: "string" },
  scopes: { type: "string" },
  note: { type: "string" },
  reason: { type: "string" },
  "allow-debt": { type: "boolean" },
  "idempotency-key": { type: "string" },
  limit: { type: "string" },
  before: { type: "string" },
  template: { type: "string" },
  model: { type: "string" },
  "web-search": { type: "boolean" },
  "max-output-tokens": { type: "string" },
  description: { type: "string" },
  org: { type: "string" },
  input: { type: "string" },
  env: { type: "string", multiple: true },
  events: { type: "string" },
  endpoint: { type: "string" },
  "previous-valid-for": { type: "string" },
} as const;

export type OptionName = keyof typeof OPTIONS;
export const GLOBAL_OPTIONS: OptionName[] = ["url", "admin-key", "json", "timeout", "help"];

export interface ParsedArgs {
  positionals: string[];
  values: Partial<Record<OptionName, string | boolean | string[]>>;
  /** Options in the order given, as typed (e.g. `--no-web-search`), for error messages. */
  given: Array<{ name: OptionName; raw: string }>;
}

// parseArgs reads `-5` as a short option; negative numbers (credits grant org_x -500) are
// protected from it and restored afterwards.
const NEGATIVE = /^-\d+(\.\d+)?$/;
const SHIELD = "\u0000";
const unshield = (s: string) => (s.startsWith(SHIELD) ? s.slice(1) : s);

export function parse(argv: string[]): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv.map((a) => (NEGATIVE.test(a) ? SHIELD + a : a)),
      options: OPTIONS,
      allowPositionals: true,
      allowNegative: true,
      strict: true,
      tokens: true,
    });
  } catch (error) {
    throw new CliError((error as Error).message.replaceAll(SHIELD, ""), ["run `npm run admin -- help` for usage"]);
  }
  const values: ParsedArgs["values"] = {};
  for (const [name, value] of Object.entries(parsed.values)) {
    values[name as OptionName] = typeof value === "string" ? unshield(value) : Array.isArray(value) ? value.map(unshield) : value;
  }
  const given = parsed.tokens.flatMap((t) => (t.kind === "option" ? [{ name: t.name as OptionName, raw: t.rawName }] : []));
  return { positionals: parsed.positionals.map(unshield), values, given };
}

export function str(args: ParsedArgs, name: OptionName): string | undefined {
  const value = args.values[name];
  return typeof value === "string" ? value : undefined;
}

/** A comma-separated option (`--events a,b`) as its items, or undefined when it is not given. */
export function commaList(args: ParsedArgs, name: OptionName): string[] | undefined {
  return str(args, name)
    ?.split(",")
    .map((item) => item.trim())
    .filter(Boolean);
}

export function flag(args: ParsedArgs, name: OptionName): boolean | undefined {
  const value = args.values[name];
  return typeof value === "boolean" ? value : undefined;
}

export function list(args: ParsedArgs, name: OptionName): string[] {
  const value = args.values[name];
  return Array.isArray(value) ? value : [];
}

export function required(args: ParsedArgs, name: OptionName, usage: string): string {
  const value = str(args, name);
  if (value === undefined || value === "") throw new CliError(`--${name} is required`, [`usage: ${usage}`]);
  return value;
}

/**
 * An integer option or argument; ranges are the API's to check (its error names them), except
 * past 2^53: JSON numbers are rounded there, and `credits grant org_x 9007199254740993` would
 * have granted 9007199254740992.
 */
export function integer(label: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value.trim())) throw new CliError(`${label} must be an integer, not "${value}"`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) {
    throw new CliError(`${label} must be an integer from ${Number.MIN_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER}, not "${value}"`);
  }
  return n;
}

/** What fetch sends in a header: tab, printable ASCII and bytes 0x80-0xff (no line break or other control character). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * An option sent as a header value (--org, --idempotency-key). fetch refuses any other, with an
 * error the CLI would report as "cannot reach Outrider".
 */
export function headerValue(label: string, value: string): string {
  if (HEADER_VALUE.test(value)) return value;
  throw new CliError(`${label} has characters an HTTP header cannot carry (line breaks, other control characters, or past U+00FF)`);
}

/** `?limit=&before=` from --limit and --before (the paged lists), or "" when neither is given. */
export function pageQuery(args: ParsedArgs): string {
  const params = new URLSearchParams();
  const limit = integer("--limit", str(args, "limit"));
  const before = str(args, "before");
  if (limit !== undefined) params.set("limit", String(limit));
  if (before !== undefined) params.set("before", before);
  return params.size > 0 ? `?${params}` : "";
}
