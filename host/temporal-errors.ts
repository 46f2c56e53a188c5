/**
 * The gRPC status behind an error of @temporalio/client. The client throws most of Temporal's
 * refusals and outages as a `ServiceError` ("Failed to signal Workflow") whose `cause` is the gRPC
 * error: its status code is on the cause, not on the error itself.
 */

/** The gRPC status codes the control API tells apart (grpc/status.h). */
export const GRPC = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNAVAILABLE: 14,
} as const;

interface MaybeGrpcError {
  code?: unknown;
  details?: unknown;
  message?: unknown;
  cause?: unknown;
}

/** The gRPC error itself: `err`, or the cause a ServiceError wraps. */
function grpcErrorOf(err: unknown): MaybeGrpcError | undefined {
  const outer = err as MaybeGrpcError | undefined;
  if (typeof outer?.code === "number") return outer;
  const cause = outer?.cause as MaybeGrpcError | undefined;
  return typeof cause?.code === "number" ? cause : undefined;
}

/** The gRPC status code of a Temporal client error, when it carries one. */
export function grpcCodeOf(err: unknown): number | undefined {
  return grpcErrorOf(err)?.code as number | undefined;
}

/** Temporal's own words for the refusal (the gRPC details), else the error's message. */
export function grpcMessageOf(err: unknown): string {
  const grpc = grpcErrorOf(err);
  if (typeof grpc?.details === "string" && grpc.details) return grpc.details;
  return String((grpc ?? (err as MaybeGrpcError | undefined))?.message ?? err);
}

/** Node's socket errors that mean the other end cannot be reached at all, not that it refused the request. */
const UNREACHABLE_ERRNOS = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EPIPE", "ETIMEDOUT"]);

/**
 * Whether an error says Temporal is down or unreachable (a retry later works): gRPC UNAVAILABLE,
 * or a socket error of Node's, on the error or on the cause it wraps. Read from codes, never from
 * the error's text, which may quote a tenant's names (a workflow id, a step's message).
 */
export function isTemporalOutage(err: unknown): boolean {
  if (grpcCodeOf(err) === GRPC.UNAVAILABLE) return true;
  for (let e = err as MaybeGrpcError | undefined, depth = 0; e && depth < 4; e = e.cause as MaybeGrpcError | undefined, depth++) {
    if (typeof e.code === "string" && UNREACHABLE_ERRNOS.has(e.code)) return true;
  }
  return false;
}
