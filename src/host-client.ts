/**
 * The edge's typed, signed client for the Node host's control API. Only an outage becomes
 * `host_unavailable` (503 with Retry-After, "retry and it will work"): the host cannot be reached,
 * or it (or a proxy in front of it) answers 502, 503 or 504, other than the host's own 504s for a
 * signal or update that may have been applied, or a query no worker answered in time (their codes
 * pass through). A failure that
 * retrying cannot fix is not an outage: the host's 500 (it failed on this request) and 401 (edge
 * and host disagree on HOST_SHARED_SECRET) are 500 `internal_error`; its client-facing 4xx codes
 * pass through; any other refusal is 502 `host_error`, and a 4xx without the host's error body (a
 * proxy's) says nothing about what the host did: 502 `host_error` too, but never a HostRefusedError.
 */
import type { z } from "zod";
import { ApiError, type ErrorCode, misconfigured } from "./errors.ts";
import {
  HOST_PATHS,
  hostErrorBody,
  runResultResponse,
  resetResponse,
  followResponse,
  readyResponse,
  interactResponse,
  stopResponse,
  startRunResponse,
  type StartRunRequest,
} from "./shared/host-api.ts";
import { parseSecrets, secretsProblem, signRequest } from "./shared/signing.ts";

const PASS_THROUGH_CODES: Partial<Record<ErrorCode, true>> = {
  run_not_found: true,
  workflow_not_found: true,
  handler_not_found: true,
  handler_failed: true,
  run_finished: true,
  message_rejected: true,
  workflow_id_in_use: true,
  step_not_found: true,
  step_not_completed: true,
  invalid_request: true,
};

/** The host answered, with its own error body, and refused the request (4xx other than 401): it did nothing. */
export class HostRefusedError extends ApiError {}

/**
 * Host (or proxy) statuses that mean "not now" rather than "no": down, overloaded, slow (408) or
 * shedding load (429), Cloudflare's origin errors included, for a host behind a Cloudflare proxy
 * or Tunnel (520 unknown, 521 down, 522 and 524 timed out, 523 unreachable). A start whose
 * attempt meets one stays in the outbox and is tried again, never recorded as failed.
 */
const OUTAGE_STATUSES = new Set([408, 429, 502, 503, 504, 520, 521, 522, 523, 524]);

/**
 * Gateway statuses that may come after the call reached the host: a bad answer from it (502, 520),
 * or no answer in time (504, 524). A 503, 521, 522 or 523 means the call never got there.
 */
const MAYBE_FORWARDED_STATUSES = new Set([502, 504, 520, 524]);

/** fetch's failures that come before anything is sent: the connection or the name was refused. */
const NEVER_SENT = /connection refused|ECONNREFUSED|ENOTFOUND|DNS|getaddrinfo/i;

/**
 * How long the edge waits for the host's answer to a signal, query or update: past the host's own
 * waits (in host/control-api.ts, which then answer with their codes): its look-up of the run
 * (TEMPORAL_CALL_WAIT_MS, 10 s) then the signal (10 s more), or the update (UPDATE_WAIT_MS, 60 s
 * more); a query's look-up and query together within QUERY_WAIT_MS (20 s). So only a host or proxy
 * that never answers meets it.
 */
export const INTERACT_WAIT_MS = { signal: 30_000, query: 30_000, update: 75_000 } as const;

/**
 * How long the edge waits for the host's answer to a cancel, terminate or follow, and to a result
 * call past the `waitMs` it asked for. Past the host's own deadline for Temporal's answers to them
 * (TEMPORAL_CALL_WAIT_MS, 10 s, in host/control-api.ts, which then answers 503 temporal_timed_out),
 * so that only a host or proxy that never answers meets it. Each of these calls is safe to repeat
 * (a second cancel changes nothing, a second terminate of the run it ended is refused, follow and
 * result read), so a wait that runs out is host_unavailable with Retry-After.
 */
export const HOST_CALL_WAIT_MS = 15_000;

/** Seconds a client should wait before retrying when the host cannot be reached. */
export const HOST_RETRY_AFTER_SECONDS = 5;
/**
 * The longest the edge waits for the host's readiness answer. The host gives Temporal 3 s
 * (READY_TIMEOUT_MS in host/control-api.ts); a host that has not answered by this is not ready.
 */
export const HOST_READY_WAIT_MS = 5_000;

export class HostClient {
  constructor(private readonly env: Env) {}

  /** Starts a run; gives up after `timeoutMs` (the outcome is then unknown: see run-starter.ts). */
  start(request: StartRunRequest, timeoutMs: number) {
    return this.call("POST", HOST_PATHS.start, startRunResponse, request, timeoutMs);
  }

  /**
   * The run's outcome; waits up to `waitMs` for it to close (and HOST_CALL_WAIT_MS more for the
   * host's answer). `runId` (a run the caller just started) lets the host answer a completed run
   * from its close event, without describing it: a hint, not a pin (any other answer is the
   * workflow's latest run's).
   */
  result(workflowId: string, waitMs = 0, runId?: string) {
    const wait = Math.max(0, Math.floor(waitMs));
    const query = `waitMs=${wait}${runId ? `&runId=${encodeURIComponent(runId)}` : ""}`;
    return this.call("GET", `${HOST_PATHS.result(workflowId)}?${query}`, runResultResponse, undefined, wait + HOST_CALL_WAIT_MS);
  }

  /**
   * Sends a signal, query or update to a run; resolves to the handler's result (signals: undefined).
   * Waits at most INTERACT_WAIT_MS for the host. A signal or an update that may have reached the
   * host without its answer reaching us (our wait ran out, the connection dropped mid-call, a
   * gateway's 502/504/520/524) is `signal_outcome_unknown` / `update_outcome_unknown`, never a
   * "retry" that could deliver it twice; a query reads only, so its failures stay retryable.
   */
  async interact(workflowId: string, kind: "signal" | "query" | "update", name: string, payload: unknown) {
    const path = HOST_PATHS.interact(workflowId, kind, name);
    const sideEffect = kind === "query" ? undefined : kind === "signal" ? "signal_outcome_unknown" : "update_outcome_unknown";
    return (await this.call("POST", path, interactResponse, { payload }, INTERACT_WAIT_MS[kind], sideEffect)).result;
  }

  /** Graceful stop: Temporal cancellation, the workflow's cleanup runs. Waits HOST_CALL_WAIT_MS at most. */
  cancel(workflowId: string, runId?: string) {
    return this.call("POST", HOST_PATHS.cancel(workflowId), stopResponse, runId ? { runId } : {}, HOST_CALL_WAIT_MS);
  }

  /** Immediate stop. Waits HOST_CALL_WAIT_MS at most. */
  terminate(workflowId: string, reason: string | undefined, runId?: string) {
    return this.call("POST", HOST_PATHS.terminate(workflowId), stopResponse, { reason, ...(runId ? { runId } : {}) }, HOST_CALL_WAIT_MS);
  }

  /** Temporal reset to just after `stepName` completed; answers the new run's id. Gives up after `timeoutMs` (the outcome is then unknown). */
  reset(workflowId: string, request: { stepName: string; reason?: string; runId?: string }, timeoutMs: number) {
    return this.call("POST", HOST_PATHS.reset(workflowId), resetResponse, request, timeoutMs);
  }

  /** Resolves when the host is up and Temporal answers it, within HOST_READY_WAIT_MS; else host_unavailable. */
  ready() {
    return this.call("GET", HOST_PATHS.ready, readyResponse, undefined, HOST_READY_WAIT_MS);
  }

  /** Asks the host to (re)relay a run's history to the edge. Waits HOST_CALL_WAIT_MS at most. */
  follow(workflowId: string) {
    return this.call("POST", HOST_PATHS.follow(workflowId), followResponse, {}, HOST_CALL_WAIT_MS);
  }

  private async call<T extends z.ZodType>(
    method: string,
    path: string,
    schema: T,
    payload: unknown,
    /** Every call to the host is bounded: a host or proxy that takes the connection and never answers would hold the caller for ever. */
    timeoutMs: number,
    /** The call changes the run, and repeating it would change it twice: the code for "it may have". */
    outcomeUnknown?: "signal_outcome_unknown" | "update_outcome_unknown",
  ): Promise<z.infer<T>> {
    const body = payload === undefined ? "" : JSON.stringify(payload);
    const secrets = parseSecrets(this.env.HOST_SHARED_SECRET);
    // A configuration error, not an outage: no retry outlasts it (docs/errors.md). A secret short
    // enough to be guessed offline from one signed request is one too: nothing is signed with it.
    const problem = secretsProblem("HOST_SHARED_SECRET", secrets);
    if (problem) {
      throw misconfigured(
        undefined,
        `the edge cannot sign its calls to the host: ${problem}`,
        "the edge cannot talk to the workflow host (a configuration problem)",
      );
    }
    const headers: Record<string, string> = { ...(await signRequest(secrets[0]!, method, path, body)) };
    if (body) headers["content-type"] = "application/json";
    let res: Response;
    try {
      res = await fetch(new URL(path, this.env.HOST_URL), {
        method,
        headers,
        body: body || undefined,
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      // Refused before anything was sent (no connection, no name): retrying works. Any other
      // failure (our wait ran out, the connection dropped) may come after the host acted; workerd
      // reports a refused connection as "Network connection lost." too, so that counts as unknown,
      // as it does for a reset (reset_outcome_unknown).
      if (outcomeUnknown && !NEVER_SENT.test(String((err as Error).message))) {
        throw new ApiError(
          outcomeUnknown,
          `the call to the workflow host failed before its answer came (${(err as Error).message}); it may have reached the host and been applied: check before sending it again`,
        );
      }
      throw new ApiError("host_unavailable", `the workflow host is not reachable: ${(err as Error).message}`, undefined, this.retryAfter());
    }
    const json: unknown = await res.json().catch(() => null);
    if (res.ok) {
      const parsed = schema.safeParse(json);
      if (!parsed.success) throw new ApiError("host_error", "the workflow host sent a response the edge does not understand");
      return parsed.data;
    }
    const hostError = hostErrorBody.safeParse(json);
    const code = hostError.success ? hostError.data.error.code : "";
    const message = hostError.success ? hostError.data.error.message : `host answered ${res.status}`;
    // The host's client-facing codes are ours too: pass them through unchanged.
    if (res.status < 500 && code in PASS_THROUGH_CODES) throw new HostRefusedError(code as ErrorCode, message);
    // The host sent the update or signal, and the run did not complete it in time or Temporal's
    // answer was lost: it may still be applied, so no "retry after" (a retry could apply it twice).
    if (res.status === 504 && (code === "update_outcome_unknown" || code === "signal_outcome_unknown")) throw new ApiError(code, message);
    // No worker answered a query in time: whether a retry works depends on the run's workers, not on us.
    if (res.status === 504 && code === "query_timed_out") throw new ApiError("query_timed_out", message);
    // A gateway's page (not the host's own error body: the host answers an outage with its 503)
    // after it may have passed the call on.
    if (outcomeUnknown && MAYBE_FORWARDED_STATUSES.has(res.status) && !hostError.success) {
      throw new ApiError(
        outcomeUnknown,
        `something in front of the workflow host answered ${res.status} after passing the call on, or not: it may have been applied; check before sending it again`,
      );
    }
    if (OUTAGE_STATUSES.has(res.status)) {
      throw new ApiError(
        "host_unavailable",
        `the workflow host cannot serve this now (${code || res.status}): ${message}`,
        undefined,
        this.retryAfter(),
      );
    }
    if (res.status === 401) {
      // The two sides disagree on the secret: an operator problem, not the caller's, and not one a retry fixes.
      console.error(
        JSON.stringify({ level: "error", message: "the host refused the edge's signature: check HOST_SHARED_SECRET on both sides", code }),
      );
      throw new ApiError(
        "internal_error",
        "the edge cannot talk to the workflow host (a configuration problem); quote the request id when reporting it",
      );
    }
    if (res.status >= 500) {
      throw new ApiError(
        "internal_error",
        `the workflow host failed to handle the request (${code || res.status}); quote the request id when reporting it`,
      );
    }
    // Only the host's own error body says the host refused (and so did nothing). A 4xx without one
    // came from something in front of it (an access proxy's 403, a tunnel's 404 during a rollout):
    // what the host did is unknown, and an accepted start must be tried again, not failed.
    if (!hostError.success)
      throw new ApiError("host_error", `the workflow host could not be asked (something in front of it answered ${res.status})`);
    throw new HostRefusedError("host_error", `the workflow host refused the request (${code}): ${message}`);
  }

  private retryAfter() {
    return { "retry-after": String(HOST_RETRY_AFTER_SECONDS) };
  }
}
