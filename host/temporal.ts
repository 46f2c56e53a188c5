/** Temporal access for the host: one client connection, and the run outcome in our terms. */
import {
  Client,
  Connection,
  WorkflowContinuedAsNewError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type WorkflowHandle,
} from "@temporalio/client";
import { TERMINAL_STATUSES, fromTemporalStatus, type RunStatus } from "../src/shared/run-status.ts";
import type { DescribeRunResponse, RunResultResponse } from "../src/shared/host-api.ts";
import type { HostConfig } from "./config.ts";
import { failureDetails } from "./failure-details.ts";
import proto, { type temporal } from "@temporalio/proto"; // CommonJS: no named ESM exports at run time
import { GRPC, grpcCodeOf, grpcMessageOf } from "./temporal-errors.ts";

export async function connectClient(config: HostConfig): Promise<Client> {
  const connection = await Connection.connect({ address: config.temporalAddress, ...config.temporalConnection });
  return new Client({ connection, namespace: config.temporalNamespace });
}

export { WorkflowNotFoundError };

/** Temporal did not answer the calls of a request within the host's deadline for it (`withinDeadline`). */
export class TemporalDeadlineError extends Error {
  constructor(readonly waitedMs: number) {
    super(`Temporal did not answer within ${waitedMs / 1000} s`);
    this.name = "TemporalDeadlineError";
  }
}

/**
 * How long the host gives Temporal to answer the calls of one request that reads a run or stops
 * it: a describe, a follow's describe, a cancel or a terminate (with the describe before it), the
 * look-up of the run before a signal, query or update, a signal itself, and a result's reads once
 * its wait is over. Temporal answers these in milliseconds; @temporalio/client sets no deadline, so
 * a Temporal that is connected but slow would hold the request for ever. Under the edge's wait for
 * these calls (HOST_CALL_WAIT_MS, 15 s, in src/host-client.ts), so that the edge gets the host's own
 * answer (503 temporal_timed_out: each of them is safe to repeat) rather than its own timeout; a
 * signal's look-up and send together (20 s) stay under the edge's 30 s for a signal too. The
 * history relay gives its describes and outcome reads the same.
 */
export const TEMPORAL_CALL_WAIT_MS = 10_000;

/**
 * Runs `calls` (one or several Temporal calls) under a deadline `ms` from now, and throws
 * TemporalDeadlineError once it passes. @temporalio/client sets no deadline of its own: a Temporal
 * that is connected but slow (overloaded persistence, a partition between its services) holds each
 * call for ever, and its retry interceptor keeps trying one that fails for about 20 s. Each gRPC
 * call made inside gets the deadline, and the whole is given up when it passes whatever it awaits,
 * its calls still in flight cancelled. Temporal may still have done what a call asked before it
 * was given up: the caller says what that means for its request.
 */
export async function withinDeadline<T>(client: Client, ms: number, calls: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + ms;
  const stop = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const work = client.withAbortSignal(stop.signal, () => client.withDeadline(deadline, calls));
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TemporalDeadlineError(ms)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } catch (err) {
    if (err instanceof TemporalDeadlineError) {
      work.catch(() => undefined);
      stop.abort();
      throw err;
    }
    // gRPC's own deadline, or the client's retry interceptor cancelled between tries once it passed.
    const code = grpcCodeOf(err);
    if (code === GRPC.DEADLINE_EXCEEDED || (code === GRPC.CANCELLED && Date.now() >= deadline)) throw new TemporalDeadlineError(ms);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Describes the run `runId` of a workflow, or its latest run. */
export async function describeRun(client: Client, workflowId: string, runId?: string): Promise<DescribeRunResponse> {
  const d = await client.workflow.getHandle(workflowId, runId).describe();
  return {
    workflowId: d.workflowId,
    runId: d.runId,
    workflowName: d.type,
    status: fromTemporalStatus(d.status.name),
    startTime: d.startTime.toISOString(),
    closeTime: d.closeTime?.toISOString() ?? null,
    historyLength: d.historyLength,
    taskQueue: d.taskQueue,
  };
}

/**
 * Signals the workflow's current run with `requestId` as Temporal's duplicate check: a run takes a
 * signal with an id it has seen once. @temporalio/client's `handle.signal` gives every call an id
 * of its own, so a signed request played again through another host would signal twice. Throws
 * WorkflowNotFoundError for a workflow id with no run, as `handle.signal` does.
 */
export async function signalRun(client: Client, workflowId: string, signalName: string, args: unknown[], requestId: string): Promise<void> {
  // The host's client has no payload codec: its converter's payloads are what Temporal stores.
  const { payloadConverter } = client.options.loadedDataConverter;
  try {
    await client.workflowService.signalWorkflowExecution({
      namespace: client.options.namespace,
      identity: client.options.identity,
      workflowExecution: { workflowId },
      signalName,
      input: { payloads: args.map((arg) => payloadConverter.toPayload(arg)) },
      requestId,
    });
  } catch (err) {
    if (grpcCodeOf(err) === GRPC.NOT_FOUND) throw new WorkflowNotFoundError(grpcMessageOf(err), workflowId, undefined);
    throw err;
  }
}

/** The innermost failure message: what the workflow author wrote, not Temporal's wrapper text. */
export function failureMessage(err: unknown): string {
  let current: unknown = err;
  let message = err instanceof Error ? err.message : String(err);
  while (current instanceof Error) {
    if (current.message) message = current.message;
    current = (current as { cause?: unknown }).cause;
  }
  return message;
}

function statusOfFailure(err: WorkflowFailedError): RunStatus {
  const cause = err.cause as { name?: string } | undefined;
  switch (cause?.name) {
    case "CancelledFailure":
      return "cancelled";
    case "TerminatedFailure":
      return "terminated";
    case "TimeoutFailure":
      return "timed_out";
    default:
      return "failed";
  }
}

/**
 * The outcome of run `runId` if it completes within `waitMs`, from its close event alone: one
 * long-poll for that event and no describe (the caller names the run, so there is nothing to look
 * up). What a direct `@temporalio/client` caller's `result()` waits for, minus runResult's describe
 * after it. null when the run did not close in time, ended any other way (failed, cancelled,
 * continued as new…) or cannot be read: the caller then asks runResult, which words every case.
 */
export async function completedRunResult(
  client: Client,
  workflowId: string,
  runId: string,
  waitMs: number,
  callerLeft?: AbortSignal,
): Promise<RunResultResponse | null> {
  const deadline = Date.now() + waitMs;
  let nextPageToken: Uint8Array | undefined;
  try {
    while (Date.now() < deadline && !callerLeft?.aborted) {
      let timer: NodeJS.Timeout | undefined;
      // The long poll is stopped when the wait runs out or the caller leaves, not left to the server's poll limit.
      const stop = new AbortController();
      const request = client.withAbortSignal(stop.signal, () =>
        client.workflowService.getWorkflowExecutionHistory({
          namespace: client.options.namespace,
          execution: { workflowId, runId },
          nextPageToken,
          waitNewEvent: true,
          historyEventFilterType: proto.temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
          skipArchival: true,
        }),
      );
      const response = await Promise.race([
        request,
        new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), Math.max(0, deadline - Date.now())))),
        ...(callerLeft ? [untilAborted(callerLeft, null)] : []),
      ]);
      clearTimeout(timer);
      if (!response) {
        request.catch(() => undefined);
        stop.abort();
        return null;
      }
      const close = response.history?.events?.[0];
      if (close) {
        const completed = close.workflowExecutionCompletedEventAttributes;
        if (!completed) return null;
        const payload = completed.result?.payloads?.[0];
        const output = payload
          ? client.options.loadedDataConverter.payloadConverter.fromPayload(payload as temporal.api.common.v1.Payload)
          : null;
        const at = close.eventTime;
        const closeTime = at ? new Date(Number(at.seconds ?? 0) * 1000 + Math.floor((at.nanos ?? 0) / 1e6)).toISOString() : null;
        return { workflowId, runId, closeTime, status: "completed", output: output ?? null, error: null };
      }
      // A long-poll that ended without the event (the server's poll limit): ask again from where it stopped.
      nextPageToken = response.nextPageToken?.length ? response.nextPageToken : undefined;
    }
  } catch {
    return null; // e.g. NOT_FOUND: runResult reports it as the API does
  }
  return null;
}

/** Resolves to `value` once `signal` aborts (at once if it has); never otherwise. */
function untilAborted<T>(signal: AbortSignal, value: T): Promise<T> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(value);
    else signal.addEventListener("abort", () => resolve(value), { once: true });
  });
}

/**
 * Settles a run's outcome: waits up to `waitMs` for it to close (0 = do not wait) and reports its
 * status with output or error. Never throws for a failed run; that is an outcome, not an error.
 * `callerLeft` ends the wait early: nobody is waiting for the answer any more.
 */
export async function runResult(
  client: Client,
  workflowId: string,
  waitMs: number,
  runId?: string,
  callerLeft?: AbortSignal,
): Promise<RunResultResponse> {
  const handle: WorkflowHandle = client.workflow.getHandle(workflowId, runId, { followRuns: false });
  // The outcome the wait below already fetched (no second history read for it).
  let outcome: Promise<unknown> | undefined;
  if (waitMs > 0) {
    // No describe before the wait: the result call answers at once for a closed run (and rejects
    // for an unknown one), so one describe after it is enough (one Temporal call fewer per wait).
    let timer: NodeJS.Timeout | undefined;
    // result() long-polls Temporal until the run closes: a wait that runs out stops it, or every
    // timed-out wait on a long run (an approval waiting for days) would leave one poll going.
    const stop = new AbortController();
    const waiting = client.withAbortSignal(stop.signal, () => handle.result());
    const settled = await Promise.race([
      waiting.then(
        () => true,
        () => true,
      ),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), waitMs))),
      ...(callerLeft ? [untilAborted(callerLeft, false as const)] : []),
    ]);
    clearTimeout(timer);
    if (settled) outcome = waiting;
    else {
      waiting.catch(() => undefined);
      stop.abort();
    }
  }
  const described = await describeRun(client, workflowId, runId);
  const base = { workflowId, runId: described.runId, closeTime: described.closeTime };
  if (!TERMINAL_STATUSES.has(described.status)) {
    return { ...base, status: described.status, output: null, error: null };
  }
  try {
    // followRuns: false keeps the outcome of the run we described, even if it continued as new.
    const fresh = () => client.workflow.getHandle(workflowId, described.runId, { followRuns: false }).result();
    // A run that continued as new while we waited: the outcome to report is the described (newer) run's.
    const output = await (outcome
      ? outcome.catch((err) => (err instanceof WorkflowContinuedAsNewError ? fresh() : Promise.reject(err)))
      : fresh());
    return { ...base, status: described.status, output: output ?? null, error: null };
  } catch (err) {
    if (err instanceof WorkflowContinuedAsNewError) {
      return { ...base, status: "continued_as_new", output: null, error: null, newRunId: err.newExecutionRunId };
    }
    if (err instanceof WorkflowFailedError) {
      return { ...base, status: statusOfFailure(err), output: null, error: failureMessage(err), errorDetails: failureDetails(err) };
    }
    throw err;
  }
}
