/**
 * Outbound HTTP for activities. Every request goes through the SSRF guard (outbound-guard.ts:
 * public addresses only unless OUTBOUND_HTTP_ALLOW says otherwise, redirects re-checked, size
 * and time capped), and every request made is recorded as an `http:request` attribute of the
 * run (count, and cost when HTTP_REQUEST_COST_USD is set), failed ones included. A refused URL
 * fails the step with a non-retryable `url_not_allowed` error; no request is made for it, so
 * it is not recorded or charged. A redirect refused after servers answered the hops before it
 * (too many, or to a refused address) is recorded, as one failed request, like any call whose
 * redirects were followed.
 */
import { ApplicationFailure, Context } from "@temporalio/activity";
import type { HttpAttribute } from "../../src/shared/aggregations.ts";
import {
  guardedFetch,
  type GuardedFetchOptions,
  policyFromEnv,
  ResponseTooLargeError,
  URL_NOT_ALLOWED,
  UrlNotAllowedError,
  InvalidResponseStatusError,
  type OutboundPolicy,
} from "./outbound-guard.ts";
import { type StepPublisher, activityRuntime, heartbeating } from "./runtime.ts";

let defaultPolicy: OutboundPolicy | undefined;
/** The host's policy (host/config.ts reads it, so a bad OUTBOUND_HTTP_ALLOW stops the host at start). */
function outboundPolicy(): OutboundPolicy {
  const configured = activityRuntime().outbound;
  if (configured) return configured;
  defaultPolicy ??= policyFromEnv({});
  return defaultPolicy;
}

/**
 * The URL that answered `res` when redirects led away from `asked` (the guard follows them by hand
 * and sets the response's `url` to the last hop); null when `asked` answered itself.
 */
export function redirectedUrl(asked: string, res: Response): string | null {
  return res.url && res.url !== URL.parse(asked)?.href ? res.url : null;
}

export async function fetchRecorded(
  publisher: StepPublisher,
  url: string,
  init: RequestInit = {},
  options: GuardedFetchOptions = {},
): Promise<Response> {
  const method = (init.method ?? "GET").toUpperCase();
  const record = (status: number | null, finalUrl: string | null = null) => {
    const attribute: HttpAttribute = { type: "http:request", method, url, status, count: 1, total: activityRuntime().httpRequestCost };
    if (finalUrl) attribute.finalUrl = finalUrl;
    void publisher.attribute(attribute);
    return publisher.settled();
  };
  let res: Response;
  try {
    // A cancelled attempt (its run stopped, the worker shutting down) stops its fetch too: it
    // heartbeats meanwhile, as that is how it hears of the cancellation.
    const cancelled = Context.current().cancellationSignal;
    res = await heartbeating(() =>
      guardedFetch(
        outboundPolicy(),
        url,
        {
          ...init,
          signal: init.signal ? AbortSignal.any([init.signal, cancelled]) : cancelled,
        },
        options,
      ),
    );
  } catch (err) {
    if (err instanceof UrlNotAllowedError) {
      if (err.requestsMade > 0) await record(null);
      throw ApplicationFailure.nonRetryable(err.message, URL_NOT_ALLOWED);
    }
    await record(null);
    if (err instanceof ResponseTooLargeError) throw ApplicationFailure.nonRetryable(err.message, "ResponseTooLarge");
    if (err instanceof InvalidResponseStatusError) throw ApplicationFailure.nonRetryable(err.message, "InvalidResponseStatus");
    throw err;
  }
  await record(res.status, redirectedUrl(url, res));
  return res;
}
