/**
 * The Workflow API's result body: the shared result payload with the trace named Output's way,
 * `trace: {destinations: {local, remote}}`. `local` is always null (Outrider writes no trace
 * file on anyone's disk); `remote` is the R2 object that holds the trace once the run has ended,
 * served by GET /workflow/:id/trace-log. `trace` is null until then, and for a run that never
 * started in Temporal.
 */
import { traceKey } from "../../../durable-objects/trace.ts";
import type { Run } from "../../db/schema.ts";
import { resultPayload } from "../../services/runs.ts";
import type { Attribute } from "../../shared/aggregations.ts";
import { isTerminal } from "../../shared/run-status.ts";

export function traceInfo(run: Run) {
  // A run Temporal never started (its start refused) left no trace: null, as Output's result of a run that kept none.
  if (!isTerminal(run.status) || !run.temporalRunId) return null;
  return { destinations: { local: null, remote: `r2:${traceKey(run.temporalWorkflowId, run.temporalRunId)}` } };
}

/** `attributes`: the run's attributes when the read already brought them (else one more DO call). */
export async function outputResult(env: Env, run: Run, attributes?: Attribute[]) {
  return { ...(await resultPayload(env, run, attributes)), trace: traceInfo(run) };
}
