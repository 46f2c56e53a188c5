/**
 * Outbound HTTP for activities. Every request made through it is recorded as an `http:request`
 * attribute of the run (count, and cost when HTTP_REQUEST_COST_USD is set), failed ones included.
 */
import type { HttpAttribute } from "../../src/shared/aggregations.ts";
import { type StepPublisher, activityRuntime } from "./runtime.ts";

/** Requests that take longer than this are aborted. */
const HTTP_TIMEOUT_MS = 30_000;

export async function fetchRecorded(publisher: StepPublisher, url: string, init: RequestInit = {}): Promise<Response> {
  const method = (init.method ?? "GET").toUpperCase();
  const record = (status: number | null) => {
    const attribute: HttpAttribute = { type: "http:request", method, url, status, count: 1, total: activityRuntime().httpRequestCost };
    return publisher.attribute(attribute);
  };
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  } catch (err) {
    await record(null);
    throw err;
  }
  await record(res.status);
  return res;
}
