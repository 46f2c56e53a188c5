/**
 * Errors, in one place. Codes are stable and listed in docs/errors.md; messages are for humans
 * and may change. Two envelopes, chosen by the request's path:
 * - the Output family (`/workflow...`, `/ready`, `/heartbeat`), Output's API server's shape:
 *   `{ "error": "<OutputErrorName>", "message", "workflowId"?, "code", "requestId", "issues"? }`;
 * - every other family: `{ "error": { "code", "message", "requestId", "issues"? } }`.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { isTransientPlatformError, TRANSIENT_RETRY_AFTER_SECONDS } from "./lib/platform-errors.ts";
import { cutText, wholeCharsEnd } from "./shared/text-limits.ts";

export const ERROR_CODES = {
  unauthorized: 401,
  insufficient_credits: 402,
  insufficient_scope: 403,
  organization_suspended: 403,
  invalid_json: 400,
  json_too_deep: 400,
  invalid_encoding: 400,
  invalid_request: 400,
  invalid_input: 400,
  invalid_idempotency_key: 400,
  webhook_url_not_allowed: 400,
  workflow_not_found: 404,
  organization_not_found: 404,
  api_key_not_found: 404,
  run_not_found: 404,
  webhook_not_found: 404,
  handler_not_found: 404,
  route_not_found: 404,
  run_finished: 409,
  run_not_started: 409,
  message_rejected: 409,
  run_not_finished: 424,
  run_ended: 404,
  wait_timed_out: 408,
  catalog_not_found: 404,
  unsupported_workflow: 424,
  invalid_page_token: 400,
  step_not_found: 404,
  step_not_completed: 409,
  trace_not_available: 404,
  organization_exists: 409,
  insufficient_balance: 409,
  credit_balance_limit: 409,
  workflow_name_taken: 409,
  workflow_edit_conflict: 409,
  webhook_secret_conflict: 409,
  too_many_webhooks: 409,
  idempotency_key_in_use: 409,
  workflow_id_in_use: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  handler_failed: 422,
  idempotency_key_reused: 422,
  rate_limited: 429,
  too_many_subscribers: 429,
  too_many_streams: 429,
  too_many_open_runs: 429,
  internal_error: 500,
  run_failed: 500,
  webhook_secret_keys_missing: 500,
  webhook_secret_keys_invalid: 500,
  webhook_dns_resolver_invalid: 500,
  jwt_keys_invalid: 500,
  host_error: 502,
  host_unavailable: 503,
  webhook_dns_unavailable: 503,
  jwt_keys_unavailable: 503,
  service_unavailable: 503,
  run_timed_out: 504,
  reset_outcome_unknown: 504,
  start_outcome_unknown: 504,
  update_outcome_unknown: 504,
  signal_outcome_unknown: 504,
  query_timed_out: 504,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The `error` string of the Output envelope: Output's own error class name where Output has the
 * same case (api/src/clients/errors.js, its error handler), else a PascalCase name of ours.
 */
export const OUTPUT_ERROR_NAMES = {
  unauthorized: "UnauthorizedError",
  insufficient_credits: "InsufficientCreditsError",
  insufficient_scope: "InsufficientScopeError",
  organization_suspended: "OrganizationSuspendedError",
  invalid_json: "SyntaxError",
  json_too_deep: "ValidationError",
  invalid_encoding: "ValidationError",
  invalid_request: "ValidationError",
  invalid_input: "ValidationError",
  invalid_idempotency_key: "ValidationError",
  webhook_url_not_allowed: "ValidationError",
  workflow_not_found: "WorkflowNotFoundError",
  organization_not_found: "OrganizationNotFoundError",
  api_key_not_found: "ApiKeyNotFoundError",
  run_not_found: "WorkflowNotFoundError",
  webhook_not_found: "WebhookNotFoundError",
  handler_not_found: "HandlerNotFoundError",
  route_not_found: "RouteNotFoundError",
  run_finished: "WorkflowAlreadyClosedError",
  run_not_started: "WorkflowNotStartedError",
  message_rejected: "WorkflowMessageRejectedError",
  run_not_finished: "WorkflowNotCompletedError",
  run_ended: "WorkflowNotFoundError",
  workflow_id_in_use: "WorkflowExecutionAlreadyStartedError",
  wait_timed_out: "WorkflowExecutionTimedOutError",
  catalog_not_found: "CatalogNotFoundError",
  unsupported_workflow: "UnsupportedWorkflowError",
  invalid_page_token: "InvalidPageTokenError",
  step_not_found: "StepNotFoundError",
  step_not_completed: "StepNotCompletedError",
  trace_not_available: "TraceNotAvailableError",
  organization_exists: "OrganizationExistsError",
  insufficient_balance: "InsufficientBalanceError",
  credit_balance_limit: "CreditBalanceLimitError",
  workflow_name_taken: "WorkflowNameTakenError",
  workflow_edit_conflict: "WorkflowEditConflictError",
  webhook_secret_conflict: "WebhookSecretConflictError",
  too_many_webhooks: "TooManyWebhooksError",
  idempotency_key_in_use: "IdempotencyKeyInUseError",
  idempotency_key_reused: "IdempotencyKeyReusedError",
  payload_too_large: "PayloadTooLargeError",
  unsupported_media_type: "UnsupportedMediaTypeError",
  handler_failed: "HandlerFailedError",
  rate_limited: "RateLimitedError",
  too_many_subscribers: "TooManySubscribersError",
  too_many_streams: "TooManyStreamsError",
  too_many_open_runs: "TooManyOpenRunsError",
  internal_error: "InternalServerError",
  run_failed: "WorkflowFailedError",
  webhook_secret_keys_missing: "WebhookSecretKeysMissingError",
  webhook_secret_keys_invalid: "WebhookSecretKeysInvalidError",
  webhook_dns_resolver_invalid: "WebhookDnsResolverInvalidError",
  jwt_keys_invalid: "JwtKeysInvalidError",
  host_error: "HostError",
  host_unavailable: "ServiceUnavailableError",
  webhook_dns_unavailable: "ServiceUnavailableError",
  jwt_keys_unavailable: "ServiceUnavailableError",
  service_unavailable: "ServiceUnavailableError",
  run_timed_out: "WorkflowTimedOutError",
  reset_outcome_unknown: "WorkflowResetOutcomeUnknownError",
  start_outcome_unknown: "WorkflowStartOutcomeUnknownError",
  update_outcome_unknown: "WorkflowUpdateOutcomeUnknownError",
  signal_outcome_unknown: "WorkflowSignalOutcomeUnknownError",
  query_timed_out: "WorkflowQueryTimedOutError",
} as const satisfies Record<ErrorCode, string>;

export type OutputErrorName = (typeof OUTPUT_ERROR_NAMES)[ErrorCode];

/** Codes whose errors concern one run: the Output envelope names its `workflowId`. */
const RUN_TIED_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "run_not_found",
  "run_finished",
  "run_not_started",
  "message_rejected",
  "reset_outcome_unknown",
  "start_outcome_unknown",
  "update_outcome_unknown",
  "signal_outcome_unknown",
  "query_timed_out",
  "run_not_finished",
  "run_ended",
  "workflow_id_in_use",
  "wait_timed_out",
  "handler_not_found",
  "handler_failed",
  "step_not_found",
  "step_not_completed",
  "trace_not_available",
  "invalid_page_token",
]);

/** Paths that answer errors in Output's envelope (the Workflow API and Output's probes). */
export function isOutputFamilyPath(path: string): boolean {
  return path === "/workflow" || path.startsWith("/workflow/") || path === "/ready" || path === "/heartbeat";
}

export interface Issue {
  path: string;
  message: string;
}

/**
 * The most issues an error lists, and the longest text of one: a 1 MB body can hold 100,000
 * mistakes, and an answer naming each (with the template's variables repeated in every one) ran
 * to hundreds of MB. The rest is counted, not listed.
 */
export const MAX_LISTED_ISSUES = 20;
const MAX_ISSUE_TEXT = 300;

/** Cut to whole characters (wholeCharsEnd): a cut between the halves of a surrogate pair left a lone one, which UTF-8 cannot carry. */
const clipped = (text: string) => (text.length > MAX_ISSUE_TEXT ? `${text.slice(0, wholeCharsEnd(text, MAX_ISSUE_TEXT))}…` : text);

/** The path of the issue that counts those not listed. */
const MORE_ISSUES_PATH = "(more)";

/**
 * At most MAX_LISTED_ISSUES issues, each clipped, then one saying how many more there were. A list
 * that is already so (an error the run's DO sent back) stays as it is.
 */
export function listedIssues(issues: Issue[]): Issue[] {
  if (issues.length === MAX_LISTED_ISSUES + 1 && issues.at(-1)!.path === MORE_ISSUES_PATH) return issues;
  const listed = issues.slice(0, MAX_LISTED_ISSUES).map((i) => ({ path: clipped(i.path), message: clipped(i.message) }));
  const more = issues.length - listed.length;
  return more > 0 ? [...listed, { path: MORE_ISSUES_PATH, message: `${more} more ${more === 1 ? "issue" : "issues"} not listed` }] : listed;
}

/** An error message's list of issues: the first MAX_LISTED_ISSUES rendered, then how many more. */
export function issueText(issues: Issue[], render: (issue: Issue) => string, separator = "; "): string {
  const more = issues.length - MAX_LISTED_ISSUES;
  const listed = issues
    .slice(0, MAX_LISTED_ISSUES)
    .map((i) => clipped(render(i)))
    .join(separator);
  return more > 0 ? `${listed}${separator}and ${more} more` : listed;
}

/** The most of a caller's id an error message quotes: a 404 for a 5,000-character id need not send it back. */
export const MAX_QUOTED_ID = 100;

/** `id` in quotes for an error message, cut at MAX_QUOTED_ID characters (saying how many more there were). */
export const quotedId = (id: string): string => `"${cutText(id, MAX_QUOTED_ID)}"`;

export class ApiError extends HTTPException {
  /** What was wrong, field by field (listedIssues: at most MAX_LISTED_ISSUES and a count of the rest). */
  readonly issues?: Issue[];

  constructor(
    readonly code: ErrorCode,
    message: string,
    issues?: Issue[],
    readonly headers?: Record<string, string>,
    /** The run the error concerns (Output envelope); else the route's own `:id` for run-tied codes. */
    readonly workflowId?: string,
  ) {
    super(ERROR_CODES[code], { message });
    if (issues) this.issues = listedIssues(issues);
  }
}

export function errorBody(code: ErrorCode, message: string, requestId: string, issues?: Issue[]) {
  return { error: { code, message, requestId, ...(issues ? { issues } : {}) } };
}

/** Output's envelope: `error` is the error's name; our `code` and `requestId` ride along. */
export function outputErrorBody(code: ErrorCode, message: string, requestId: string, issues?: Issue[], workflowId?: string) {
  return {
    error: OUTPUT_ERROR_NAMES[code],
    message,
    ...(workflowId ? { workflowId } : {}),
    code,
    requestId,
    ...(issues ? { issues } : {}),
  };
}

/** The workflow id a run-tied error names: the error's own, else the matched route's `:id`. */
function errorWorkflowId(c: Context, err: ApiError): string | undefined {
  if (err.workflowId) return err.workflowId;
  if (!RUN_TIED_CODES.has(err.code)) return undefined;
  try {
    return c.req.param("id") || undefined;
  } catch {
    return undefined;
  }
}

/** The challenge of a 401 whose code named none. */
const DEFAULT_CHALLENGE = 'Bearer realm="outrider"';
/** The challenge of a 401 for a bearer credential that was sent but is not valid (RFC 6750). */
export const INVALID_TOKEN_CHALLENGE = `${DEFAULT_CHALLENGE}, error="invalid_token"`;
/** The challenge of a 403 for a valid key without the scope a route needs (RFC 6750). */
export const insufficientScopeChallenge = (scope: string) => `${DEFAULT_CHALLENGE}, error="insufficient_scope", scope="${scope}"`;

export function errorResponse(c: Context, err: ApiError): Response {
  const requestId = c.get("requestId") ?? "";
  const body = isOutputFamilyPath(c.req.path)
    ? outputErrorBody(err.code, err.message, requestId, err.issues, errorWorkflowId(c, err))
    : errorBody(err.code, err.message, requestId, err.issues);
  const res = c.json(body, ERROR_CODES[err.code]);
  // An error is an answer for now, never one to keep (a stream token's URL may have asked it).
  res.headers.set("cache-control", "no-store");
  for (const [name, value] of Object.entries(err.headers ?? {})) res.headers.set(name, value);
  // Every 401 says how to authenticate (RFC 9110), also where the code that threw named no scheme.
  // The host's signed routes are not for callers, and Bearer is not their scheme.
  if (err.code === "unauthorized" && !res.headers.has("www-authenticate") && !c.req.path.startsWith("/internal/"))
    res.headers.set("www-authenticate", DEFAULT_CHALLENGE);
  return res;
}

/** The app's single onError: known errors keep their code, anything else is a logged 500. */
/**
 * A setting the operator must fix (a secret unset or too short to be safe): logged at ERROR as
 * `logged` (which names the setting, never its value), answered 500 `internal_error` saying
 * `answer`. No retry helps, so no Retry-After.
 */
export function misconfigured(requestId: string | undefined, logged: string, answer: string): ApiError {
  console.error(JSON.stringify({ level: "error", ...(requestId ? { requestId } : {}), message: logged }));
  return new ApiError("internal_error", `${answer}; quote the request id when reporting it`);
}

/** 503 service_unavailable with Retry-After: `what` met a transient platform error, and asking again in a moment will work. */
export function briefOutageError(what: string): ApiError {
  return new ApiError("service_unavailable", `${what} is briefly unavailable; try again in a moment`, undefined, {
    "retry-after": String(TRANSIENT_RETRY_AFTER_SECONDS),
  });
}

export function handleError(err: Error, c: Context): Response {
  if (err instanceof ApiError) return errorResponse(c, err);
  if (err instanceof HTTPException) {
    // Hono's own (e.g. body-limit) exceptions: map the status onto our codes.
    if (err.status === 413) return errorResponse(c, new ApiError("payload_too_large", "request body is too large"));
    if (err.status === 401) return errorResponse(c, new ApiError("unauthorized", err.message || "unauthorized"));
    if (err.status === 400) return errorResponse(c, new ApiError("invalid_request", err.message || "bad request"));
  }
  // A read (GET, HEAD) broken by an error of the platform that a retry fixes (D1's transient
  // errors, a Durable Object call marked retryable or overloaded) changed nothing: 503 with
  // Retry-After says truthfully that asking again in a moment will work. A write's stays a 500:
  // it may have been applied.
  if ((c.req.method === "GET" || c.req.method === "HEAD") && isTransientPlatformError(err)) {
    console.warn(
      JSON.stringify({ level: "warn", requestId: c.get("requestId"), message: "read: transient platform error", error: err.message }),
    );
    return errorResponse(c, briefOutageError("this read"));
  }
  console.error(JSON.stringify({ level: "error", requestId: c.get("requestId"), message: err.message, stack: err.stack }));
  return errorResponse(c, new ApiError("internal_error", "something went wrong; quote the request id when reporting it"));
}
