/**
 * `Idempotency-Key` on the routes that start runs (draft-ietf-httpapi-idempotency-key-header, and
 * Stripe's behaviour). This middleware only reads and checks the header and fingerprints the
 * request; the key is claimed where the run starts (src/services/idempotency.ts, called from the
 * start path next to the credit hold), so a key costs no extra round trip of its own.
 *
 * - The key: 1 to 255 printable ASCII characters (0x20-0x7E), sent bare (`abc`) or as the
 *   draft's Structured Field string (`"abc"`); anything else is 400 `invalid_idempotency_key`.
 * - The fingerprint: SHA-256 over the method, the path as routed (escapes decoded) and the body. JSON bodies are
 *   canonicalized (keys sorted, whitespace dropped) and form bodies are reduced to their sorted
 *   fields, so a client's retry matches whatever its serializer or multipart boundary does. Form
 *   bodies are read strictly (src/shared/form-body.ts): a text field that is not UTF-8 is a 400
 *   `invalid_encoding` here, so two such bodies never share a fingerprint and nothing is claimed.
 * - A replayed response carries `Idempotent-Replayed: true`.
 */
import { createMiddleware } from "hono/factory";
import { getPath } from "hono/utils/url";
import type { AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { jsonDepth, MAX_JSON_DEPTH } from "../json-body/index.ts";
import { isFormMediaType, MalformedFormError, parseFormBody, type FormPart } from "../../shared/form-body.ts";
import type { IdempotencyRequest } from "../../services/idempotency.ts";

export const IDEMPOTENCY_KEY_HEADER = "idempotency-key";
export const IDEMPOTENT_REPLAYED_HEADER = "idempotent-replayed";
export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/**
 * The inside of a quoted key as the draft's string (RFC 8941 §3.3.3): `\\` and `\"` stand for
 * `\` and `"`, so `"a\\b"` is the key sent bare as `a\b`, and any other backslash is malformed.
 * (A key with `"` in it is refused below, escaped or not.)
 */
function unescapedString(inner: string): string {
  if (!inner.includes("\\")) return inner;
  if (/\\(?![\\"])/.test(inner.replace(/\\[\\"]/g, ""))) {
    throw new ApiError("invalid_idempotency_key", 'a quoted Idempotency-Key escapes only \\ and " (as \\\\ and \\")', [
      { path: "Idempotency-Key", message: 'a backslash in quotes escapes \\ or "' },
    ]);
  }
  return inner.replace(/\\([\\"])/g, "$1");
}

const isHttpWhitespace = (ch: string | undefined) => ch === " " || ch === "\t";

/**
 * HTTP's white space (space, tab) off both ends, in one pass. Not String.trim, which also dropped a
 * vertical tab, form feed or no-break space: `k\v` was taken as the key `k` instead of refused as
 * not printable ASCII. Not a regular expression either: `[ \t]+$` backtracks quadratically over a
 * long run of spaces inside the value.
 */
function trimHttpWhitespace(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isHttpWhitespace(text[start])) start++;
  while (end > start && isHttpWhitespace(text[end - 1])) end--;
  return text.slice(start, end);
}

/** The key's value, or null when the header is absent; throws 400 for a malformed key. */
export function parseIdempotencyKey(header: string | undefined): string | null {
  if (header === undefined) return null;
  let key = trimHttpWhitespace(header);
  const quoted = key.length >= 2 && key.startsWith('"') && key.endsWith('"');
  if (quoted) key = unescapedString(key.slice(1, -1));
  // Two Idempotency-Key headers arrive joined by ", " (Fetch's Headers): a bare key with a comma is
  // that, never one key (a key with a comma in it is sent quoted, as the draft's string).
  if (!quoted && key.includes(",")) {
    throw new ApiError("invalid_idempotency_key", "send one Idempotency-Key header; a bare key cannot hold a comma (quote it)", [
      { path: "Idempotency-Key", message: "one key" },
    ]);
  }
  if (key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH || !/^[\x20-\x7e]+$/.test(key) || key.includes('"')) {
    throw new ApiError(
      "invalid_idempotency_key",
      `Idempotency-Key must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters (optionally in double quotes)`,
      [{ path: "Idempotency-Key", message: "1-255 printable ASCII characters" }],
    );
  }
  return key;
}

/** JSON with object keys sorted: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

async function sha256Hex(data: ArrayBuffer | Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** What identifies "the same request": method, path and body (canonicalized where it has a shape). */
export async function requestFingerprint(request: Request): Promise<string> {
  const type = request.headers.get("content-type") ?? "";
  let body: string;
  if (isFormMediaType(type)) {
    const bytes = new Uint8Array(await request.clone().arrayBuffer());
    let form: FormPart[] | null = null;
    try {
      form = parseFormBody(type, bytes);
    } catch (err) {
      // A body that is not a well-formed form, or whose text is not UTF-8, is fingerprinted by its
      // bytes: the route gives its own answer (a JSON route's 415, execute's 400 invalid_encoding),
      // the same with a key as without one, before anything is claimed.
      if (!(err instanceof MalformedFormError) && !(err instanceof ApiError && err.code === "invalid_encoding")) throw err;
    }
    if (form) {
      const fields: Array<[string, string]> = [];
      for (const part of form) {
        fields.push([part.name, part.kind === "text" ? part.value : `file:${part.filename}:${await sha256Hex(part.bytes)}`]);
      }
      body = `form:${canonicalJson(fields.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1)))}`;
    } else {
      body = `raw:${await sha256Hex(bytes)}`;
    }
  } else {
    const text = await request.clone().text();
    // canonicalJson recurses once per level: a body deeper than the routes take (they refuse it,
    // 400 json_too_deep, before any key is claimed) is fingerprinted by its text, never parsed here.
    if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) body = `raw:${text}`;
    else {
      try {
        body = `json:${canonicalJson(JSON.parse(text))}`;
      } catch {
        body = `raw:${text}`;
      }
    }
  }
  // The path as the router matched it (percent-escapes decoded, `%2F` and `%25` kept), so that
  // `/api/v1/run/%68ello` and `/api/v1/run/hello` are the same request, as they are the same route.
  return sha256Hex(new TextEncoder().encode(`${request.method} ${getPath(request)}\n${body}`));
}

/** Reads `Idempotency-Key` for the start routes it is mounted on; marks replayed responses. */
export const idempotencyKey = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const key = parseIdempotencyKey(c.req.header(IDEMPOTENCY_KEY_HEADER));
    if (key === null || c.req.method !== "POST") return next();
    const request: IdempotencyRequest = { key, fingerprint: await requestFingerprint(c.req.raw), replayed: false };
    c.set("idempotency", request);
    await next();
    if (request.replayed) c.res.headers.set(IDEMPOTENT_REPLAYED_HEADER, "true");
  });
