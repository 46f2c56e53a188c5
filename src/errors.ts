/**
 * One error shape for every route: `{ "error": { "code", "message", "requestId", "issues"? } }`.
 * Codes are stable and listed in docs/errors.md; messages are for humans and may change.
 */
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export const ERROR_CODES = {
  unauthorized: 401,
  insufficient_credits: 402,
  invalid_json: 400,
  json_too_deep: 400,
  invalid_request: 400,
  invalid_input: 400,
  workflow_not_found: 404,
  organization_not_found: 404,
  api_key_not_found: 404,
  run_not_found: 404,
  handler_not_found: 404,
  route_not_found: 404,
  run_finished: 409,
  run_not_finished: 409,
  organization_exists: 409,
  insufficient_balance: 409,
  workflow_name_taken: 409,
  payload_too_large: 413,
  handler_failed: 422,
  rate_limited: 429,
  internal_error: 500,
  run_failed: 500,
  host_error: 502,
  host_unavailable: 503,
  run_timed_out: 504,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface Issue {
  path: string;
  message: string;
}

export class ApiError extends HTTPException {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly issues?: Issue[],
    readonly headers?: Record<string, string>,
  ) {
    super(ERROR_CODES[code], { message });
  }
}

export function errorBody(code: ErrorCode, message: string, requestId: string, issues?: Issue[]) {
  return { error: { code, message, requestId, ...(issues ? { issues } : {}) } };
}

export function errorResponse(c: Context, err: ApiError): Response {
  const res = c.json(errorBody(err.code, err.message, c.get("requestId") ?? "", err.issues), ERROR_CODES[err.code]);
  for (const [name, value] of Object.entries(err.headers ?? {})) res.headers.set(name, value);
  return res;
}

/** The app's single onError: known errors keep their code, anything else is a logged 500. */
export function handleError(err: Error, c: Context): Response {
  if (err instanceof ApiError) return errorResponse(c, err);
  if (err instanceof HTTPException) {
    // Hono's own (e.g. body-limit) exceptions: map the status onto our codes.
    if (err.status === 413) return errorResponse(c, new ApiError("payload_too_large", "request body is too large"));
    if (err.status === 401) return errorResponse(c, new ApiError("unauthorized", err.message || "unauthorized"));
    if (err.status === 400) return errorResponse(c, new ApiError("invalid_request", err.message || "bad request"));
  }
  console.error(JSON.stringify({ level: "error", requestId: c.get("requestId"), message: err.message, stack: err.stack }));
  return errorResponse(c, new ApiError("internal_error", "something went wrong; quote the request id when reporting it"));
}
