/**
 * A request's query parameters, one value each. Hono's `c.req.query()` keeps the first of a
 * repeated parameter and drops the rest, so `?limit=5&limit=500` would be read as 5 without a
 * word; Output's server (Express) reads a repeat as a list, which its validation refuses. A
 * repeated parameter is 400 `invalid_request` naming it, before the route's schema runs, and one
 * whose percent-escapes are not UTF-8 is 400 `invalid_encoding`.
 */
import type { Context } from "hono";
import { ApiError, type Issue, issueText, MAX_QUOTED_ID } from "../../errors.ts";
import { cutText } from "../../shared/text-limits.ts";

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

/** A run of well-formed percent-escapes (`%` and two hex digits each), as Hono decodes them. */
const ESCAPE_RUN = /(?:%[0-9A-Fa-f]{2})+/g;

const decodesAsUtf8 = (run: string): boolean => {
  try {
    decodeURIComponent(run);
    return true;
  } catch {
    return false;
  }
};

/** Whether each run of escapes in a raw name or value decodes to UTF-8 (a `%` that starts no escape is text). */
const escapesAreUtf8 = (raw: string): boolean => (raw.match(ESCAPE_RUN) ?? []).every(decodesAsUtf8);

/**
 * A parameter whose percent-escapes are not UTF-8 (`?search=%FF`) is 400 `invalid_encoding` naming
 * it, as a form field's is: Hono would keep the escapes as text and search for `%FF` literally.
 * A `%` that starts no escape (`?search=100%`, `50%off`) is a literal percent sign, as Hono, the
 * WHATWG URL parser and Output's server (Express) all read it, so it is not refused.
 */
function refuseBadEncoding(url: string): void {
  const start = url.indexOf("?");
  if (start < 0 || !url.includes("%", start)) return;
  const end = url.indexOf("#", start);
  const bad: string[] = [];
  for (const pair of url.slice(start + 1, end < 0 ? undefined : end).split("&")) {
    const eq = pair.indexOf("=");
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    if (!escapesAreUtf8(rawName) || (eq >= 0 && !escapesAreUtf8(pair.slice(eq + 1)))) bad.push(readableName(rawName));
  }
  if (bad.length === 0) return;
  const issues = bad.map((name) => ({ path: name, message: "not valid UTF-8 once percent-decoded" }));
  throw new ApiError(
    "invalid_encoding",
    `query parameter${bad.length > 1 ? "s" : ""} not valid UTF-8 once percent-decoded: ${namesOf(issues)}`,
    issues,
  );
}

/**
 * The parameters an error names, for its message: each cut at MAX_QUOTED_ID characters, 20 at most
 * and how many more (issueText). A URL of thousands of names, or one name of thousands of characters,
 * need not come back whole.
 */
const namesOf = (issues: Issue[]) => issueText(issues, (issue) => cutText(issue.path, MAX_QUOTED_ID), ", ");

/** A parameter's name for an error: decoded where its escapes are UTF-8, else as sent. */
function readableName(rawName: string): string {
  if (!escapesAreUtf8(rawName)) return rawName;
  return rawName.replace(/\+/g, " ").replace(ESCAPE_RUN, (run) => decodeURIComponent(run));
}

function refuseRepeats(repeated: string[]): void {
  if (repeated.length === 0) return;
  const issues = repeated.map((name) => ({ path: name, message: "given more than once; send it once" }));
  throw new ApiError(
    "invalid_request",
    `query parameter${repeated.length > 1 ? "s" : ""} given more than once: ${namesOf(issues)}`,
    issues,
  );
}
