/**
 * A request's query parameters, one value each. Hono's `c.req.query()` keeps the first of a
 * repeated parameter and drops the rest, so `?limit=5&limit=500` would be read as 5 without a
 * word; Output's server (Express) reads a repeat as a list, which its validation refuses. A
 * repeated parameter is 400 `invalid_request` naming it, before the route's schema runs, and one
 * whose percent-escapes are not UTF-8 is 400 `invalid_encoding`.
 */
import type { Context } from "hono";
import { ApiError } from "../../errors.ts";

export function singleValuedQuery(c: Context): Record<string, string> {
  refuseBadEncoding(c.req.url);
  refuseRepeats(
    Object.entries(c.req.queries())
      .filter(([, values]) => values.length > 1)
      .map(([name]) => name),
  );
  return c.req.query();
}

/**
 * One query parameter, for middleware that reads a single one before the route's schema runs
 * (a stream's `?token=`, `?lastEventId=`): undefined when absent, 400 when repeated.
 */
export function singleQueryValue(c: Context, name: string): string | undefined {
  refuseBadEncoding(c.req.url);
  const values = c.req.queries(name);
  if (values && values.length > 1) refuseRepeats([name]);
  return values?.[0];
}

const decoded = (raw: string): string | null => {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    return null;
  }
};

/**
 * A parameter whose percent-escapes are not UTF-8 (`?search=%FF`) is 400 `invalid_encoding` naming
 * it, as a form field's is: Hono would keep the escapes as text and search for `%FF` literally.
 */
function refuseBadEncoding(url: string): void {
  const start = url.indexOf("?");
  if (start < 0 || !url.includes("%", start)) return;
  const end = url.indexOf("#", start);
  const bad: string[] = [];
  for (const pair of url.slice(start + 1, end < 0 ? undefined : end).split("&")) {
    const eq = pair.indexOf("=");
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    const name = decoded(rawName);
    if (name === null || (eq >= 0 && decoded(pair.slice(eq + 1)) === null)) bad.push((name ?? rawName).slice(0, 100));
  }
  if (bad.length === 0) return;
  throw new ApiError(
    "invalid_encoding",
    `query parameter${bad.length > 1 ? "s" : ""} not valid UTF-8 once percent-decoded: ${bad.join(", ")}`,
    bad.map((name) => ({ path: name, message: "not valid UTF-8 once percent-decoded" })),
  );
}

function refuseRepeats(repeated: string[]): void {
  if (repeated.length === 0) return;
  throw new ApiError(
    "invalid_request",
    `query parameter${repeated.length > 1 ? "s" : ""} given more than once: ${repeated.join(", ")}`,
    repeated.map((name) => ({ path: name, message: "given more than once; send it once" })),
  );
}
