/**
 * Parameters of a media type header (`Content-Type`, a multipart part's `Content-Disposition`):
 * the multipart boundary, and the charset a body declares. The edge reads every body as UTF-8, so
 * a body declared in another charset is refused rather than read as something its sender did not
 * mean (refuseNonUtf8Charset: json-body's readOptionalJson, form-body's parseFormBody).
 */
import { ApiError } from "../errors.ts";
import { cutText } from "./text-limits.ts";

/**
 * A header's parameters (`; key=value` or `; key="quoted \" value"`) in order, keys lower-cased,
 * repeated keys kept. One pass over the value (no regular expression that could backtrack on a
 * hostile header), so its cost is linear in the header's length.
 */
export function headerParamList(value: string): Array<[key: string, value: string]> {
  const params: Array<[string, string]> = [];
  const n = value.length;
  const skipSpace = (at: number) => {
    while (at < n && (value[at] === " " || value[at] === "\t")) at++;
    return at;
  };
  const nextSemicolon = (at: number) => {
    const next = value.indexOf(";", at);
    return next < 0 ? n : next;
  };
  for (let i = nextSemicolon(0); i < n; ) {
    const keyStart = skipSpace(i + 1);
    let eq = keyStart;
    while (eq < n && value[eq] !== "=" && value[eq] !== ";") eq++;
    const key = value.slice(keyStart, eq).trim().toLowerCase();
    if (eq >= n || value[eq] === ";") {
      i = eq; // a parameter without a value
      continue;
    }
    let j = skipSpace(eq + 1);
    let param: string;
    if (value[j] === '"') {
      let out = "";
      for (j++; j < n && value[j] !== '"'; j++) {
        if (value[j] === "\\" && j + 1 < n) j++;
        out += value[j];
      }
      param = out;
      i = nextSemicolon(j);
    } else {
      i = nextSemicolon(j);
      param = value.slice(j, i).trim();
    }
    if (key) params.push([key, param]);
  }
  return params;
}

/** A header's parameters by key, the first of a repeated key kept. */
export function headerParams(value: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const [key, param] of headerParamList(value)) if (!params.has(key)) params.set(key, param);
  return params;
}

/** The most of a caller's charset parameter an error quotes. */
const MAX_QUOTED_CHARSET = 64;

/** Whether an encoding label names UTF-8 (the Encoding Standard's labels: `utf-8`, `UTF8`, `unicode-1-1-utf-8`, ...). */
function isUtf8Label(label: string): boolean {
  try {
    return new TextDecoder(label).encoding === "utf-8";
  } catch {
    return false; // not a label at all
  }
}

/**
 * The first `charset` parameter of a Content-Type that does not name UTF-8, or null when every one
 * does (or there is none), cut to what an error quotes. Every one counts: of
 * `charset=utf-8; charset=latin1` a proxy may read either, and the edge must not read the body
 * otherwise than what stands in front of it.
 */
export function nonUtf8Charset(contentType: string): string | null {
  for (const [key, value] of headerParamList(contentType)) {
    if (key === "charset" && !isUtf8Label(value)) return cutText(value, MAX_QUOTED_CHARSET);
  }
  return null;
}

/**
 * A JSON body or a form declared in another charset than UTF-8: 415 `unsupported_media_type`,
 * before a byte of it is read. Read as UTF-8 whatever it says, it would be other text than its
 * sender (or a proxy in front of the edge) read.
 */
export function refuseNonUtf8Charset(contentType: string, sent: "body" | "form"): void {
  const charset = nonUtf8Charset(contentType);
  if (charset === null) return;
  throw new ApiError(
    "unsupported_media_type",
    `the ${sent} is sent with charset "${charset}"; ${sent === "body" ? "bodies" : "form fields"} are read as UTF-8 only: send UTF-8 (charset=utf-8, or no charset)`,
  );
}
