/**
 * Parses a JSON body against a zod schema: malformed JSON (or bytes that are not UTF-8, a number
 * out of a float's range, a string or key with half a surrogate pair) is `invalid_json`, nesting
 * deeper than MAX_JSON_DEPTH is `json_too_deep`, a schema mismatch is
 * `invalid_request` with one issue per field (dotted path and message). Every JSON body the edge
 * reads goes through `parseJsonText` (multipart fields that carry JSON too).
 */
import type { Context } from "hono";
import type { z } from "zod";
import { ApiError, type Issue, issueText } from "../../errors.ts";

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
}

/** Callers' bodies. */
export const TENANT_JSON: JsonLimits = { maxDepth: MAX_JSON_DEPTH, wellFormedStrings: true };
/**
 * The signed host's pushes (/internal/*): more depth, and strings as the host wrote them (a text
 * the host cut to a length may end in half a surrogate pair; refusing the push would stall the run).
 */
export const INTERNAL_JSON: JsonLimits = { maxDepth: INTERNAL_MAX_JSON_DEPTH, wellFormedStrings: false };

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
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ApiError("invalid_json", `${what} is not valid JSON: ${(err as Error).message}`);
  }
  // JSON.parse reads `1e400` as Infinity, which validation takes for a number and JSON.stringify
  // then writes as `null`: the workflow would get null where the caller sent a number. Refused;
  // and so is half a surrogate pair where strings must be well-formed. The parsed value is walked
  // only when one pass over the text says it may hold either.
  const risks = risksIn(text);
  const checkStrings = limits.wellFormedStrings && risks.surrogate;
  if (risks.outOfRange || checkStrings) {
    const found = firstBadValue(parsed, checkStrings);
    if (found) {
      const where = found.path.length > 0 ? found.path.map((p) => p.toWellFormed()).join(".") : "(the body itself)";
      const [problem, issue] =
        found.kind === "out_of_range"
          ? ["a number too large for a 64-bit float", "number out of range"]
          : ["a string with half a surrogate pair (not well-formed Unicode)", "lone surrogate"];
      throw new ApiError("invalid_json", `${what} has ${problem} at ${where}`, [{ path: where, message: issue }]);
    }
  }
  return parsed;
}

/**
 * One linear pass over JSON text: whether it may hold a number out of range (an exponent, or a run
 * of 309 digits) or a surrogate escape (`\ud800`-`\udfff`). A regex such as /\d{309}/ would take
 * time quadratic in a run's length on text made of 308-digit runs.
 */
function risksIn(text: string): { outOfRange: boolean; surrogate: boolean } {
  let outOfRange = false;
  let surrogate = false;
  let digits = 0;
  for (let i = 0; i < text.length && !(outOfRange && surrogate); i++) {
    const ch = text.charCodeAt(i);
    if (ch >= 0x30 && ch <= 0x39) {
      if (++digits >= 309) outOfRange = true;
      continue;
    }
    if (digits > 0 && (ch === 0x65 /* e */ || ch === 0x45) /* E */) outOfRange = true;
    digits = 0;
    if (ch === 0x5c /* \ */ && (text.charCodeAt(i + 1) | 0x20) === 0x75 /* u */ && (text.charCodeAt(i + 2) | 0x20) === 0x64 /* d */) {
      const third = text.charCodeAt(i + 3) | 0x20;
      if ((third >= 0x38 && third <= 0x39) || (third >= 0x61 && third <= 0x66)) surrogate = true; // 8-9, a-f
    }
  }
  return { outOfRange, surrogate };
}

/** The first non-finite number, or (with `strings`) string or key that is not well-formed, with its path; no path is built until one is found. */
function firstBadValue(value: unknown, strings: boolean): { path: string[]; kind: "out_of_range" | "surrogate" } | null {
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

/** The body as JSON, or undefined when it is empty (or only white space). */
export async function readOptionalJson(c: Context, limits: JsonLimits = TENANT_JSON): Promise<unknown> {
  const text = await readUtf8Body(c);
  if (text.trim() === "") return undefined;
  return parseJsonText(text, "request body", limits);
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
  return parseBody(schema, (await readOptionalJson(c)) ?? {});
}
