/**
 * Admission of a history-stream subscriber, inside the run's DO: the Worker's first subscription
 * carries the caller's organization and cursor, and the DO decides here (next to D1) what the
 * route used to decide with two calls of its own: the run exists for this organization (else
 * 404), the requested run id is one of its runs (else 404), the run has started (else 503), and a
 * client already at the end of a finished run gets 204. One call into the home region per connect.
 */
import { findRunByWorkflowId } from "../../src/db/runs.ts";
import type { ErrorCode } from "../../src/errors.ts";

/** Query parameters of an admission (first subscription of a history stream). */
export const ADMISSION_PARAMS = {
  organizationId: "admitOrganizationId",
  requestedRunId: "admitRunId",
  lastEventId: "admitLastEventId",
  /** log view (Workflow Runs API): the run UUID the caller named; the run must be this workflow's row. */
  runUuid: "admitRunUuid",
} as const;
/** Header of the 101 answer: the run the subscription follows (reconnects ask for the same one). */
export const ADMITTED_RUN_HEADER = "x-admitted-run-id";

export interface StreamStateLike {
  runId: string | null;
  finished: boolean;
  lastEventId: number;
}

const refuse = (status: 404 | 503, code: ErrorCode, message: string) => Response.json({ error: { code, message } }, { status });

/**
 * null: not an admission (a reconnect; it names its run). Else either a refusal to send back as is,
 * or the run id the subscription follows.
 */
export async function admitSubscriber(
  env: Env,
  workflowId: string,
  url: URL,
  streamState: (runId?: string) => Promise<StreamStateLike>,
): Promise<{ refusal: Response } | { runId: string } | null> {
  const organizationId = url.searchParams.get(ADMISSION_PARAMS.organizationId);
  if (!organizationId) return null;
  const runUuid = url.searchParams.get(ADMISSION_PARAMS.runUuid);
  if (runUuid !== null) return admitLogSubscriber(env, organizationId, workflowId, runUuid);
  const requestedRunId = url.searchParams.get(ADMISSION_PARAMS.requestedRunId) || undefined;
  const lastEventId = url.searchParams.has(ADMISSION_PARAMS.lastEventId)
    ? Number(url.searchParams.get(ADMISSION_PARAMS.lastEventId))
    : null;
  const run = await findRunByWorkflowId(env.DB, organizationId, workflowId);
  if (!run) return { refusal: refuse(404, "run_not_found", `no run with workflowId "${workflowId}"`) };
  const state = await streamState(requestedRunId);
  if (requestedRunId !== undefined && state.lastEventId === 0 && !state.finished && requestedRunId !== run.temporalRunId) {
    return { refusal: refuse(404, "run_not_found", `workflow ${workflowId} has no run ${requestedRunId}`) };
  }
  const runId = requestedRunId ?? state.runId ?? run.temporalRunId;
  if (!runId) return { refusal: refuse(503, "host_unavailable", "the run has not started yet; retry shortly") };
  if (state.finished && lastEventId !== null && lastEventId >= state.lastEventId) return { refusal: new Response(null, { status: 204 }) };
  return { runId };
}

/**
 * The Workflow Runs API's stream (`log` view) names its run by UUID; the Worker found the workflow
 * id (this DO) from it. Here, against D1's primary: the row is this organization's and has that
 * UUID (else 404, as if it did not exist), and the run has started (else 503). The subscription
 * follows the row's current Temporal run.
 */
async function admitLogSubscriber(
  env: Env,
  organizationId: string,
  workflowId: string,
  runUuid: string,
): Promise<{ refusal: Response } | { runId: string }> {
  const run = await findRunByWorkflowId(env.DB, organizationId, workflowId);
  if (!run || run.id !== runUuid) return { refusal: refuse(404, "run_not_found", `no workflow run "${runUuid.slice(0, 100)}"`) };
  if (!run.temporalRunId) return { refusal: refuse(503, "host_unavailable", "the run has not started yet; retry shortly") };
  return { runId: run.temporalRunId };
}
