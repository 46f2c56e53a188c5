/**
 * Form bodies (multipart/form-data and application/x-www-form-urlencoded) read strictly: a text
 * field's name or value whose bytes are not UTF-8 is a 400 `invalid_encoding` naming the field,
 * never a value with U+FFFD in place of the bad bytes (what the platform's `formData()` does).
 *
 * - urlencoded: the WHATWG urlencoded parser (split on `&`, then the first `=`, `+` is a space,
 *   percent-decoded to bytes), with the bytes decoded by a fatal UTF-8 decoder; so `inputs=%FF`
 *   is refused, and so are raw bytes that are not UTF-8.
 * - multipart: split on the boundary as RFC 2046 and RFC 7578 say; each part's headers and, for a
 *   text part, its content must be UTF-8. A part with a `filename` (or `filename*`) parameter is a
 *   file: its content is binary and is not checked (the caller decides whether it takes files).
 * - a form whose `Content-Type` names a charset other than UTF-8 is 415 `unsupported_media_type`,
 *   and a text part whose own `Content-Type` does is 400 `invalid_encoding` naming it: never read
 *   as UTF-8 when its sender says it is something else.
 *
 * The one parser for form bodies at the edge: the execute routes read their fields with it and
 * the Idempotency-Key fingerprint hashes what it gives, so both see the same fields.
 */
import { ApiError } from "../errors.ts";
import { headerParams, nonUtf8Charset, refuseNonUtf8Charset } from "./media-type.ts";

/** A form field: text, or a file's name and bytes. */
export type FormPart = { name: string; kind: "text"; value: string } | { name: string; kind: "file"; filename: string; bytes: Uint8Array };

/** Thrown when the body is not a well-formed form of its declared type (callers choose the answer). */
export class MalformedFormError extends Error {
  override name = "MalformedFormError";
}

/** BOM kept (as the WHATWG "UTF-8 decode without BOM"): only the bytes' validity is judged. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** `bytes` as text; `path` names them in the 400 (a field's name, or `(body)` for a name or headers). */
function decodeText(bytes: Uint8Array, path: string, what: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new ApiError("invalid_encoding", `${what} is not valid UTF-8 (form fields must be UTF-8)`, [
      { path, message: "not valid UTF-8" },
    ]);
  }
}

/** The fields of a form body, in order, duplicates kept; throws for non-UTF-8 text and malformed bodies. */
const URLENCODED = /^\s*application\/x-www-form-urlencoded\s*(;|$)/i;
const MULTIPART = /^\s*multipart\/form-data\s*(;|$)/i;

/** Whether a Content-Type names a form (media types are case-insensitive: `Multipart/Form-Data` is one). */
export function isFormMediaType(contentType: string): boolean {
  return URLENCODED.test(contentType) || MULTIPART.test(contentType);
}

export function parseFormBody(contentType: string, body: Uint8Array): FormPart[] {
  refuseNonUtf8Charset(contentType, "form");
  if (URLENCODED.test(contentType)) return parseUrlencoded(body);
  if (MULTIPART.test(contentType)) return parseMultipart(contentType, body);
  throw new MalformedFormError("not a form content type");
}

const hex = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);

/** WHATWG percent-decode, with `+` as a space (the urlencoded parser's replacement). */
function percentDecode(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x25 && i + 2 < bytes.length && hex(bytes[i + 1]!) && hex(bytes[i + 2]!)) {
      out[n++] = Number.parseInt(String.fromCharCode(bytes[i + 1]!, bytes[i + 2]!), 16);
      i += 2;
    } else out[n++] = b === 0x2b ? 0x20 : b;
  }
  return out.subarray(0, n);
}

function parseUrlencoded(body: Uint8Array): FormPart[] {
  const parts: FormPart[] = [];
  let start = 0;
  for (let i = 0; i <= body.length; i++) {
    if (i < body.length && body[i] !== 0x26 /* & */) continue;
    const sequence = body.subarray(start, i);
    start = i + 1;
    if (sequence.length === 0) continue;
    const eq = sequence.indexOf(0x3d /* = */);
    const nameBytes = percentDecode(eq < 0 ? sequence : sequence.subarray(0, eq));
    const valueBytes = percentDecode(eq < 0 ? new Uint8Array(0) : sequence.subarray(eq + 1));
    const name = decodeText(nameBytes, "(body)", "a field name");
    parts.push({ name, kind: "text", value: decodeText(valueBytes, name, `field ${name}`) });
  }
  return parts;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0]!;
  const last = haystack.length - needle.length;
  outer: for (let i = haystack.indexOf(first, from); i !== -1 && i <= last; i = haystack.indexOf(first, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

const HEADERS_END = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a]);

function parseMultipart(contentType: string, body: Uint8Array): FormPart[] {
  const boundary = headerParams(contentType).get("boundary");
  if (!boundary || boundary.length > 200) throw new MalformedFormError("multipart/form-data without a boundary");
  const encoder = new TextEncoder();
  const dashBoundary = encoder.encode(`--${boundary}`);
  const delimiter = encoder.encode(`\r\n--${boundary}`);
  // The first boundary opens the body (or follows a preamble that ends with CRLF).
  const opensWithBoundary = body.length >= dashBoundary.length && dashBoundary.every((b, i) => body[i] === b);
  const afterPreamble = opensWithBoundary ? 0 : indexOf(body, delimiter, 0);
  if (afterPreamble < 0) throw new MalformedFormError("the multipart body has no boundary");
  let pos = (opensWithBoundary ? 0 : afterPreamble + 2) + dashBoundary.length;
  const parts: FormPart[] = [];
  for (;;) {
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) return parts; // the closing `--boundary--`
    while (body[pos] === 0x20 || body[pos] === 0x09) pos++; // transport padding
    if (body[pos] !== 0x0d || body[pos + 1] !== 0x0a) throw new MalformedFormError("a boundary line does not end with CRLF");
    pos += 2;
    const headersEnd = body[pos] === 0x0d && body[pos + 1] === 0x0a ? pos : indexOf(body, HEADERS_END, pos);
    if (headersEnd < 0) throw new MalformedFormError("a part's headers do not end");
    const contentStart = headersEnd === pos ? pos + 2 : headersEnd + 4;
    const next = indexOf(body, delimiter, contentStart);
    if (next < 0) throw new MalformedFormError("the multipart body does not close");
    const headerText = decodeText(body.subarray(pos, headersEnd), "(body)", "a part's headers (its field name or file name)");
    let disposition: string | null = null;
    /** The first charset a part's Content-Type (any of them) names that is not UTF-8. */
    let partCharset: string | null = null;
    for (const line of headerText.split("\r\n")) {
      const colon = line.indexOf(":");
      const header = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : "";
      if (header === "content-disposition") disposition = line.slice(colon + 1).trim();
      else if (header === "content-type") partCharset ??= nonUtf8Charset(line.slice(colon + 1));
    }
    if (!disposition || !/^form-data\s*(;|$)/i.test(disposition)) throw new MalformedFormError("a part is not form-data");
    const params = headerParams(disposition);
    const name = params.get("name");
    if (name === undefined) throw new MalformedFormError("a part has no name");
    const content = body.subarray(contentStart, next);
    const filename = params.get("filename") ?? params.get("filename*");
    if (filename !== undefined) parts.push({ name, kind: "file", filename, bytes: content });
    else if (partCharset !== null) {
      throw new ApiError("invalid_encoding", `field ${name} is declared as ${partCharset}: form fields must be UTF-8`, [
        { path: name, message: `declared as ${partCharset}: form fields must be UTF-8` },
      ]);
    } else parts.push({ name, kind: "text", value: decodeText(content, name, `field ${name}`) });
    pos = next + delimiter.length;
    if (pos > body.length) throw new MalformedFormError("the multipart body does not close");
  }
}
