/**
 * A request's query parameters, one value each. Hono's `c.req.query()` keeps the first of a
 * repeated parameter and drops the rest, so `?limit=5&limit=500` would be read as 5 without a
 * word; Output's server (Express) reads a repeat as a list, which its validation refuses. A
 * repeated parameter is 400 `invalid_request` naming it, before the route's schema runs.
 */
import type { Context } from "hono";
import { ApiError } from "../../errors.ts";

export function singleValuedQuery(c: Context): Record<string, string> {
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
  const values = c.req.queries(name);
  if (values && values.length > 1) refuseRepeats([name]);
  return values?.[0];
}

function refuseRepeats(repeated: string[]): void {
  if (repeated.length === 0) return;
  throw new ApiError(
    "invalid_request",
    `query parameter${repeated.length > 1 ? "s" : ""} given more than once: ${repeated.join(", ")}`,
    repeated.map((name) => ({ path: name, message: "given more than once; send it once" })),
  );
}
