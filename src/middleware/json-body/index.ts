/**
 * Parses a JSON body against a zod schema: malformed JSON (or bytes that are not UTF-8, a number
 * a 64-bit float would change, a string or key with half a surrogate pair) is `invalid_json`, nesting
 * deeper than MAX_JSON_DEPTH is `json_too_deep`, a schema mismatch is
 * `invalid_request` with one issue per field (dotted path and message). Every JSON body the edge
 * reads goes through `parseJsonText` (multipart fields that carry JSON too).
 */
import type { Context } from "hono";
import type { z } from "zod";
import { ApiError, type Issue, issueText } from "../../errors.ts";
import { refuseNonUtf8Charset } from "../../shared/media-type.ts";

export function zodIssues(error: z.ZodError, prefix = ""): Issue[] {
  return error.issues.map((issue) => ({
    path: [prefix, ...issue.path.map(String)].filter(Boolean).join("."),
    message: issue.message,
  }));
}

/** Deepest nesting of arrays and objects a JSON body may have (each `[` or `{` is one level). */
export const MAX_JSON_DEPTH = 64;
/**
 * The signed host's pushes (/internal/*) carry callers' data inside a few levels of envelope
 * (history events with decoded payloads, a run's output), so they get more room; still bounded.
 */
export const INTERNAL_MAX_JSON_DEPTH = 1024;

/** What JSON text may hold beyond its syntax. */
export interface JsonLimits {
  /** Deepest nesting of arrays and objects. */
  maxDepth: number;
  /**
   * Every string and key must be well-formed Unicode: a `\ud800` escape without its other half
   * parses to a string that URI-encoding (JSON Pointers in schema validation) and UTF-8 cannot take.
   */
  wellFormedStrings: boolean;
  /**
   * Every number must read as the value it spells: an integer written out in digits past what a
   * 64-bit float holds exactly (`12345678901234567890` reads as …7168), or a nonzero number
   * too small for one (`1e-400` reads as 0), would reach the workflow changed, and two different
   * bodies would share one Idempotency-Key fingerprint. Decimals round as JSON numbers do.
   */
  exactNumbers: boolean;
}

/** Callers' bodies. */
export const TENANT_JSON: JsonLimits = { maxDepth: MAX_JSON_DEPTH, wellFormedStrings: true, exactNumbers: true };
/**
 * The signed host's pushes (/internal/*): more depth, and strings as the host wrote them (a text
 * the host cut to a length may end in half a surrogate pair; refusing the push would stall the run).
 * Its numbers are JSON.stringify's, which read back exactly, so they are not checked digit by digit.
 */
export const INTERNAL_JSON: JsonLimits = { maxDepth: INTERNAL_MAX_JSON_DEPTH, wellFormedStrings: false, exactNumbers: false };

/**
 * The deepest nesting in JSON text, counting brackets outside strings, without parsing it (so a
 * hostile body cannot exhaust a recursive parser's stack). Stops counting past `limit`.
 */
export function jsonDepth(text: string, limit = MAX_JSON_DEPTH): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c /* \ */) i++;
      else if (ch === 0x22 /* " */) inString = false;
    } else if (ch === 0x22) {
      inString = true;
    } else if (ch === 0x5b /* [ */ || ch === 0x7b /* { */) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (ch === 0x5d /* ] */ || ch === 0x7d /* } */) {
      depth--;
    }
  }
  return deepest;
}

/** JSON text (a body, or a multipart field named `what`) parsed after the depth check. */
export function parseJsonText(text: string, what = "request body", limits: JsonLimits = TENANT_JSON): unknown {
  const { maxDepth } = limits;
  if (jsonDepth(text, maxDepth) > maxDepth) {
    throw new ApiError(
      "json_too_deep",
      `${what} nests arrays and objects more than ${maxDepth} levels deep (the most allowed is ${maxDepth})`,
    );
  }
  // JSON.parse reads `1e400` as Infinity, which validation takes for a number and JSON.stringify
  // then writes as `null`: the workflow would get null where the caller sent a number. Refused, as
  // are (for callers) numbers a float would change, and half a surrogate pair where strings must be
  // well-formed. One pass over the text says whether the value may hold any; only then is each
  // number read against its source text (a reviver costs time) or the value walked.
  const risks = risksIn(text);
  const checkNumbers = limits.exactNumbers && risks.numbers;
  let parsed: unknown;
  let badNumber: NumberProblem | null = null;
  try {
    if (checkNumbers) {
      parsed = JSON.parse(text, function (this: unknown, key: string, value: unknown, context?: { source?: string }) {
        if (badNumber === null && typeof value === "number") {
          const kind = numberProblem(value, context?.source);
          if (kind) badNumber = { holder: this, key, kind };
        }
        return value;
      });
    } else {
      parsed = JSON.parse(text);
    }
  } catch (err) {
    throw new ApiError("invalid_json", `${what} is not valid JSON: ${(err as Error).message}`);
  }
  const checkStrings = limits.wellFormedStrings && risks.surrogate;
  const found: BadValue | null = badNumber
    ? { path: pathTo(parsed, badNumber) ?? [], kind: (badNumber as NumberProblem).kind }
    : (risks.outOfRange && !checkNumbers) || checkStrings
      ? firstBadValue(parsed, checkStrings)
      : null;
  if (found) {
    const where = found.path.length > 0 ? found.path.map((p) => p.toWellFormed()).join(".") : "(the body itself)";
    const [problem, issue] = BAD_VALUE_TEXT[found.kind];
    throw new ApiError("invalid_json", `${what} has ${problem} at ${where}`, [{ path: where, message: issue }]);
  }
  return parsed;
}

type BadKind = "out_of_range" | "inexact_integer" | "underflow" | "surrogate";
interface BadValue {
  path: string[];
  kind: BadKind;
}

/** What the error says of each kind of bad value: the message's words, and the issue's. */
const BAD_VALUE_TEXT: Record<BadKind, [string, string]> = {
  out_of_range: ["a number too large for a 64-bit float", "number out of range"],
  inexact_integer: [
    "an integer a 64-bit float cannot hold exactly (past ±2^53 it would be rounded; send it as a string)",
    "integer not exact",
  ],
  underflow: ["a nonzero number too small for a 64-bit float (it would read as 0)", "number out of range"],
  surrogate: ["a string with half a surrogate pair (not well-formed Unicode)", "lone surrogate"],
};

/** A number the reviver found changed: the object or array holding it and its key there. */
interface NumberProblem {
  holder: unknown;
  key: string;
  kind: BadKind;
}

/** Integer literals this long may be past 2^53 (9007199254740992, 16 digits); shorter ones are exact. */
const EXACT_INTEGER_DIGITS = 15;

/**
 * Whether a parsed number differs from the literal it came from. `source` is the literal's text
 * (JSON.parse's source access); without it only a non-finite value is caught.
 */
function numberProblem(value: number, source: string | undefined): BadKind | null {
  if (!Number.isFinite(value)) return "out_of_range";
  if (source === undefined) return null;
  const digits = source.charCodeAt(0) === 0x2d /* - */ ? source.length - 1 : source.length;
  if (digits > EXACT_INTEGER_DIGITS && /^-?\d+$/.test(source)) {
    return BigInt(source) === BigInt(value) ? null : "inexact_integer";
  }
  if (value === 0 && /[1-9]/.test(source.split(/[eE]/)[0]!)) return "underflow";
  return null;
}

/** The path from `root` to the value at `problem.key` in `problem.holder`; null when it is the root itself. */
function pathTo(root: unknown, problem: NumberProblem): string[] | null {
  if (root === null || typeof root !== "object") return null;
  if (root === problem.holder) return [problem.key];
  // The depth check bounds this recursion.
  for (const key of Object.keys(root)) {
    const below = pathTo((root as Record<string, unknown>)[key], problem);
    if (below) return [key, ...below];
  }
  return null;
}

/**
 * One linear pass over JSON text: whether it may hold a number out of range (an exponent, or a run
 * of 309 digits), a number a float would change (an exponent, or a run of more than
 * EXACT_INTEGER_DIGITS digits), or a surrogate escape (`\ud800`-`\udfff`). Digits inside strings
 * count too: a false alarm costs only the closer look. A regex such as /\d{309}/ would take time
 * quadratic in a run's length on text made of 308-digit runs.
 */
function risksIn(text: string): { outOfRange: boolean; numbers: boolean; surrogate: boolean } {
  let outOfRange = false;
  let numbers = false;
  let surrogate = false;
  let digits = 0;
  for (let i = 0; i < text.length && !(outOfRange && surrogate); i++) {
    const ch = text.charCodeAt(i);
    if (ch >= 0x30 && ch <= 0x39) {
      if (++digits > EXACT_INTEGER_DIGITS) numbers = true;
      if (digits >= 309) outOfRange = true;
      continue;
    }
    if (digits > 0 && (ch === 0x65 /* e */ || ch === 0x45) /* E */) outOfRange = numbers = true;
    digits = 0;
    if (ch === 0x5c /* \ */ && (text.charCodeAt(i + 1) | 0x20) === 0x75 /* u */ && (text.charCodeAt(i + 2) | 0x20) === 0x64 /* d */) {
      const third = text.charCodeAt(i + 3) | 0x20;
      if ((third >= 0x38 && third <= 0x39) || (third >= 0x61 && third <= 0x66)) surrogate = true; // 8-9, a-f
    }
  }
  return { outOfRange, numbers, surrogate };
}

/** The first non-finite number, or (with `strings`) string or key that is not well-formed, with its path; no path is built until one is found. */
function firstBadValue(value: unknown, strings: boolean): BadValue | null {
  if (typeof value === "number") return Number.isFinite(value) ? null : { path: [], kind: "out_of_range" };
  if (typeof value === "string") return strings && !value.isWellFormed() ? { path: [], kind: "surrogate" } : null;
  if (value === null || typeof value !== "object") return null;
  // The depth check bounds this recursion.
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = firstBadValue(value[i], strings);
      if (found) return { ...found, path: [String(i), ...found.path] };
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    if (strings && !key.isWellFormed()) return { path: [key], kind: "surrogate" };
    const found = firstBadValue((value as Record<string, unknown>)[key], strings);
    if (found) return { ...found, path: [key, ...found.path] };
  }
  return null;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** The body as text; bytes that are not UTF-8 are `invalid_json` (never replaced with U+FFFD). */
export async function readUtf8Body(c: Context): Promise<string> {
  const bytes = await c.req.arrayBuffer();
  try {
    return utf8.decode(bytes);
  } catch {
    throw new ApiError("invalid_json", "request body is not valid UTF-8 (JSON must be UTF-8)");
  }
}

/**
 * JSON's own white space (RFC 8259: space, tab, CR, LF) and nothing else. Not String.trim, which
 * also takes U+00A0, U+2028, U+3000, ...: a body of those is no JSON, and read as none it started
 * a published run, or sent a signal without its payload.
 */
const JSON_WHITESPACE_ONLY = /^[ \t\r\n]*$/;

/**
 * The body as JSON, or undefined when it is empty (or only JSON's white space). A body sent as another
 * media type (`text/plain`, a form) is 415 `unsupported_media_type`, not read as JSON: what its
 * sender meant is not JSON. A body with no `Content-Type` at all is read as JSON. So is a
 * `Content-Type` whose `charset` names another encoding than UTF-8 (`charset=iso-8859-1`,
 * `utf-16`), before a byte is read: its bytes may well be UTF-8 too, and read as such they would be
 * other text than the sender (or a proxy in front of the edge) meant.
 */
export async function readOptionalJson(c: Context, limits: JsonLimits = TENANT_JSON): Promise<unknown> {
  const type = c.req.header("content-type");
  if (type !== undefined) refuseNonUtf8Charset(type, "body");
  const text = await readUtf8Body(c);
  if (JSON_WHITESPACE_ONLY.test(text)) return undefined;
  if (type !== undefined && !isJsonMediaType(type)) {
    throw new ApiError("unsupported_media_type", `the body is sent as "${type.slice(0, 100)}"; send it as application/json`);
  }
  return parseJsonText(text, "request body", limits);
}

/** The body as JSON, `{}` when it is empty (for routes whose fields are all optional). JSON's `null` stays `null`: it is no object. */
export async function readJsonOrEmptyObject(c: Context): Promise<unknown> {
  const raw = await readOptionalJson(c);
  return raw === undefined ? {} : raw;
}

/**
 * The body as JSON, checked against `schema`. An empty body is no syntax error but a missing
 * object, as in Output's API server (Express's JSON parser): sent as JSON it reads as `{}` (so the
 * error names the missing fields), sent as anything else as nothing; either way 400 invalid_request
 * (Output's ValidationError) unless the schema takes it.
 */
export async function readJson<T extends z.ZodType>(c: Context, schema: T, limits: JsonLimits = TENANT_JSON): Promise<z.infer<T>> {
  const raw = await readOptionalJson(c, limits);
  if (raw === undefined) return parseBody(schema, isJsonMediaType(c.req.header("content-type")) ? {} : undefined);
  return parseBody(schema, raw);
}

/** `application/json` or any `+json` type, parameters aside. */
export function isJsonMediaType(contentType: string | undefined): boolean {
  const type = contentType?.split(";")[0]?.trim().toLowerCase() ?? "";
  return type === "application/json" || type.endsWith("+json");
}

/** Checks a parsed body against `schema`: 400 invalid_request naming each issue. Returns zod's output. */
export function parseBody<T extends z.ZodType>(schema: T, raw: unknown): z.infer<T> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = zodIssues(parsed.error);
    throw new ApiError(
      "invalid_request",
      `invalid request body: ${issueText(issues, (i) => `${i.path || "(body)"}: ${i.message}`)}`,
      issues,
    );
  }
  return parsed.data;
}

/** Like readJson, but an empty body stands for `{}` (for routes whose fields are all optional). */
export async function readJsonOrEmpty<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  return parseBody(schema, await readJsonOrEmptyObject(c));
}
