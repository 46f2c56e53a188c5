/** The two error envelopes the API answers with, for tests of every layer (no runtime imports: workerd and Node both load it). */

/** Ours: every family but the Output one. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; issues?: Array<{ path: string; message: string }> };
}

/** Output's error envelope, used by the `/workflow` family, `/ready` and `/heartbeat`. */
export interface OutputErrorBody {
  error: string;
  message: string;
  workflowId?: string;
  code: string;
  requestId: string;
  issues?: Array<{ path: string; message: string }>;
}

/** The stable error code of either envelope: Output's (`/workflow...`: `code` beside a string `error`) or ours (`error.code`). */
export function errorCodeOf(body: unknown): string | undefined {
  const b = body as { code?: string; error?: string | { code?: string } };
  return typeof b.error === "object" ? b.error?.code : b.code;
}
