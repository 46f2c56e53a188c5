/**
 * Parses a JSON body against a zod schema: malformed JSON (or bytes that are not UTF-8) is
 * `invalid_json`, nesting deeper than MAX_JSON_DEPTH is `json_too_deep`, a schema mismatch is
 * `invalid_request` with one issue per field (dotted path and message). Every JSON body the edge
 * reads goes through `parseJsonText` (multipart fields that carry JSON too).
 */
import type { Context } from "hono";
import type { z } from "zod";
import { ApiError, type Issue } from "../../errors.ts";

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
export function parseJsonText(text: string, what = "request body", maxDepth = MAX_JSON_DEPTH): unknown {
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
  // then writes as `null`: the workflow would get null where the caller sent a number. Refused.
  // Only text with an exponent (a digit, then e) or a 309-digit run can hold such a number.
  if (MAYBE_OUT_OF_RANGE.test(text)) {
    const at = nonFinitePath(parsed);
    if (at) {
      const where = at.length > 0 ? at.join(".") : "(the body itself)";
      throw new ApiError("invalid_json", `${what} has a number too large for a 64-bit float at ${where}`, [
        { path: where, message: "number out of range" },
      ]);
    }
  }
  return parsed;
}

const MAYBE_OUT_OF_RANGE = /\d[eE]|\d{309}/;

/** Where the first non-finite number is (its path), or null; no path is built until one is found. */
function nonFinitePath(value: unknown): string[] | null {
  if (typeof value === "number") return Number.isFinite(value) ? null : [];
  if (value === null || typeof value !== "object") return null;
  // The depth check bounds this recursion.
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const at = nonFinitePath(value[i]);
      if (at) return [String(i), ...at];
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    const at = nonFinitePath((value as Record<string, unknown>)[key]);
    if (at) return [key, ...at];
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
export async function readOptionalJson(c: Context, maxDepth = MAX_JSON_DEPTH): Promise<unknown> {
  const text = await readUtf8Body(c);
  if (text.trim() === "") return undefined;
  return parseJsonText(text, "request body", maxDepth);
}

/**
 * The body as JSON, checked against `schema`. An empty body is no syntax error but a missing
 * object, as in Output's API server (Express's JSON parser): sent as JSON it reads as `{}` (so the
 * error names the missing fields), sent as anything else as nothing; either way 400 invalid_request
 * (Output's ValidationError) unless the schema takes it.
 */
export async function readJson<T extends z.ZodType>(c: Context, schema: T, maxDepth = MAX_JSON_DEPTH): Promise<z.infer<T>> {
  const raw = await readOptionalJson(c, maxDepth);
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
      `invalid request body: ${issues.map((i) => `${i.path || "(body)"}: ${i.message}`).join("; ")}`,
      issues,
    );
  }
  return parsed.data;
}

/** Like readJson, but an empty body stands for `{}` (for routes whose fields are all optional). */
export async function readJsonOrEmpty<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  return parseBody(schema, (await readOptionalJson(c)) ?? {});
}
