/**
 * The trace log (`GET /workflow/:id/trace-log`, `/runs/:rid/trace-log`) as the Worker's one call
 * into the home region. In the run's DO, next to D1's primary, the host and R2: the run is the
 * caller's organization's (else 404, as if it did not exist), the run asked for has ended (the
 * latest one is first settled with Temporal through the host, as a status read is; else 424),
 * and its trace, written now if it was not yet, comes back as the R2 object's bytes (404
 * `trace_not_available` if there is none). docs/start-path.md.
 */
import { findRunByWorkflowId } from "../../src/db/runs.ts";
import { ApiError } from "../../src/errors.ts";
import { isTerminal } from "../../src/shared/run-status.ts";
import type { EventLog } from "./event-log.ts";
import type { ReadReply } from "./run-reader.ts";
import { type SerializedError, serializeError } from "./run-starter.ts";

/** The answer of a 424: the trace is written when the run ends, so ask again shortly. */
const TRACE_RETRY_AFTER_S = 2;
/**
 * How long a read of a run whose outcome is known waits for the last history events: the host
 * relays them tens of milliseconds after the outcome, and a client that saw the run end (a
 * blocking run, a status read) asks for its trace at once, as Output's CLI does (`run`, then
 * `debug`); Output answers such a run's trace, never a 424.
 */
export const HISTORY_CATCH_UP_MS = 3_000;

export type TraceLogReply = { ok: true; runId: string; trace: ReadableStream<Uint8Array> } | { ok: false; error: SerializedError };

export interface TraceReaderDeps {
  env: Env;
  log: Pick<EventLog, "knowsRun" | "isComplete" | "finished">;
  /** The run's row settled with Temporal (RunReader.read). */
  read(organizationId: string, workflowId: string): Promise<ReadReply>;
  /** The R2 key of a complete run's trace (the latest run's without an id), written now if missing; null while it goes on. */
  traceFor(runId?: string): Promise<{ runId: string; key: string } | null>;
  /** Resolves at the log's next append, or after `ms` (log-waiters.ts). */
  nextAppend(ms: number): Promise<void>;
}

const notFinished = (what: string) =>
  new ApiError("run_not_finished", `${what}; its trace is written when it ends`, undefined, { "retry-after": String(TRACE_RETRY_AFTER_S) });

/** The trace of `pinnedRunId`, or of the workflow's current run. */
export async function readTraceLog(
  deps: TraceReaderDeps,
  organizationId: string,
  workflowId: string,
  pinnedRunId?: string,
): Promise<TraceLogReply> {
  try {
    let runId = pinnedRunId;
    if (pinnedRunId) {
      if (!(await findRunByWorkflowId(deps.env.DB, organizationId, workflowId)))
        throw new ApiError("run_not_found", `no run with workflowId "${workflowId}"`);
      if (!deps.log.knowsRun(pinnedRunId)) throw new ApiError("run_not_found", `workflow ${workflowId} has no run ${pinnedRunId}`);
      if (!deps.log.finished(pinnedRunId)) throw notFinished(`run ${pinnedRunId} of ${workflowId} has not ended`);
    } else {
      const reply = await deps.read(organizationId, workflowId);
      if (!reply.ok) return reply;
      const { run } = reply.view;
      if (!isTerminal(run.status)) throw notFinished(`run ${workflowId} is ${run.status}`);
      if (!run.temporalRunId)
        throw new ApiError("trace_not_available", `run ${workflowId} ended (${run.status}) before it started in Temporal: it has no trace`);
      runId = run.temporalRunId;
    }
    // The log has the outcome: the last history events may still be on their way from the host.
    let trace = await deps.traceFor(runId);
    const catchingUp = runId !== undefined && deps.log.finished(runId) !== null;
    for (const deadline = Date.now() + HISTORY_CATCH_UP_MS; !trace && catchingUp && Date.now() < deadline; ) {
      await deps.nextAppend(deadline - Date.now());
      trace = await deps.traceFor(runId);
    }
    if (!trace) throw notFinished(`the history of ${workflowId} is not complete yet`);
    const object = await deps.env.TRACES.get(trace.key);
    if (!object) throw new ApiError("trace_not_available", `no trace was recorded for run ${trace.runId} of ${workflowId}`);
    return { ok: true, runId: trace.runId, trace: object.body };
  } catch (err) {
    return { ok: false, error: serializeError(err) };
  }
}
