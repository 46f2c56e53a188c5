/**
 * A failed run's structured failure: Output's V1 result field `errorDetails` (its API server's
 * `extractFailure`), which the host builds from Temporal's failure chain (host/failure-details.ts)
 * and the edge answers on results. `cause` is the chain outermost first, without stack traces.
 */
import { z } from "zod";
import { cutText } from "./text-limits.ts";
import { UNSUCCESSFUL_STATUSES, type RunStatus } from "./run-status.ts";

/** How deep `cause` goes; a deeper chain ends in a link that says so (as Output's does). */
export const MAX_ERROR_CAUSE_DEPTH = 10;

export interface ErrorCause {
  /** The failure's `type` when Temporal carries one (an ApplicationFailure's), else its class name. */
  name: string;
  message: string | null;
  cause?: ErrorCause;
}

// The id lets the OpenAPI document refer to the recursive schema by name.
export const errorCause: z.ZodType<ErrorCause> = z
  .lazy(() => z.object({ name: z.string(), message: z.string().nullable(), cause: errorCause.optional() }))
  .meta({ id: "ErrorCause" });

export const errorDetails = z.object({
  /** What the workflow author's error said (the deepest failure that is not one of Temporal's wrappers). */
  message: z.string().nullable(),
  /** That failure's name (its type: `Error`, `ValidationError`, …). */
  name: z.string().nullable(),
  /** Whether Temporal would retry it; null when no failure in the chain says. */
  retryable: z.boolean().nullable(),
  /** The step that failed (the activity's name: ours are bare step names), or null. */
  activityId: z.string().nullable(),
  cause: errorCause.nullable(),
});
export type ErrorDetails = z.infer<typeof errorDetails>;

/** What a result says when its run's failure was recorded without details (an older run): the message alone. */
export const messageOnlyDetails = (message: string | null): ErrorDetails => ({
  message,
  name: null,
  retryable: null,
  activityId: null,
  cause: null,
});

/** The details with every message and name cut to at most `maxChars` characters (cutText). */
export function cutErrorDetails(details: ErrorDetails, maxChars: number): ErrorDetails {
  const cut = (text: string | null) => (text === null ? null : cutText(text, maxChars));
  const cutCause = (cause: ErrorCause): ErrorCause => ({
    name: cutText(cause.name, maxChars),
    message: cut(cause.message),
    ...(cause.cause ? { cause: cutCause(cause.cause) } : {}),
  });
  return {
    message: cut(details.message),
    name: cut(details.name),
    retryable: details.retryable,
    activityId: cut(details.activityId),
    cause: details.cause ? cutCause(details.cause) : null,
  };
}

/**
 * `errorDetails` as results and webhooks answer them: for a run that did not complete, its
 * recorded details, or its message alone when none were recorded (a run that ended before they
 * were, or one that never reached Temporal); null for any other status.
 */
export function answeredErrorDetails(
  status: RunStatus,
  details: ErrorDetails | null | undefined,
  error: string | null,
): ErrorDetails | null {
  if (!UNSUCCESSFUL_STATUSES.has(status)) return null;
  return details ?? messageOnlyDetails(error);
}
