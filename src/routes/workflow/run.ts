import type { App } from "../../app-env.ts";
import { positiveNumberVar } from "../../shared/positive-number-var.ts";
import { ApiError } from "../../errors.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { isTerminal, type RunStatus } from "../../shared/run-status.ts";
import { runToOutcome } from "../../services/runs.ts";
import { mintingClaims, mintStreamToken } from "../../stream-tokens.ts";
import { outputResult } from "./result-body.ts";
import { runWorkflowBody } from "./schemas.ts";
import { assertKnownCatalog, startChoices, withOutputWorkflowErrors } from "./start-request.ts";

/**
 * POST /workflow/run: starts a run and waits for its result, `timeout` ms (default
 * RUN_WAIT_DEFAULT_MS, 300 s as Output). When the wait runs out first the answer is Output's 408
 * WorkflowExecutionTimedOutError with the `workflowId`; the run goes on, and the Location header
 * points at its result. A run that ended other than completed answers `failed`, as Output's run
 * does, with the run's own status in `runStatus`. A start the host has not confirmed is waited
 * for within the same `timeout` (the run's DO keeps starting it): confirmed, the wait goes on for
 * its outcome; still unconfirmed when the time is up, it is the same 408 (it will run, exactly
 * once). When the wait itself failed (the call into the DO lost after it accepted the run), the
 * answer is the same 408 at once: never a 2xx for a run that has not ended (Output's contract).
 */
/** Output's default wait for a run (its TEMPORAL_WORKFLOW_EXECUTION_MAX_WAITING). */
export const DEFAULT_RUN_WAIT_MS = 300_000;

/** RUN_WAIT_DEFAULT_MS, or DEFAULT_RUN_WAIT_MS when it is unset or not a positive number (never NaN). */
export const runWaitDefaultMs = (env: Pick<Env, "RUN_WAIT_DEFAULT_MS">) => positiveNumberVar(env.RUN_WAIT_DEFAULT_MS, DEFAULT_RUN_WAIT_MS);

export function registerRun(app: App) {
  app.post("/workflow/run", async (c) => {
    const request = await readJson(c, runWorkflowBody);
    assertKnownCatalog(request);
    const organizationId = c.get("auth").organizationId;
    const waitMs = request.timeout ?? runWaitDefaultMs(c.env);
    // One call into the home region: the run's DO starts it and waits for its outcome.
    const { run, attributes, waitFailed } = await withOutputWorkflowErrors(request.workflowName, () =>
      runToOutcome(c.env, organizationId, request.workflowName, request.input ?? {}, waitMs, startChoices(c, request)),
    );
    const location = `/workflow/${encodeURIComponent(run.temporalWorkflowId)}/result`;
    if (!isTerminal(run.status)) {
      // Never a 2xx for a run that has not ended: Output's clients read any 2xx from /workflow/run
      // as its end (its CLI prints "Status: scheduled" and exits 0). Nor an error that invites a
      // retry, which would start a second run: Output's 408, without Retry-After, with the Location.
      const why = waitFailed
        ? "The wait for the run was lost, but the run is accepted and goes on"
        : "Workflow execution exceeded timeout for synchronous execution. The run goes on";
      throw new ApiError(
        "wait_timed_out",
        `${why}: GET /workflow/${run.temporalWorkflowId}/result once it ends`,
        undefined,
        { location },
        run.temporalWorkflowId,
      );
    }
    const stream = await mintStreamToken(c.env.STREAM_TOKEN_SECRET, mintingClaims(c.get("auth"), run.temporalWorkflowId));
    return c.json(
      {
        ...(await outputResult(c.env, run, attributes)),
        ...runAnswerStatus(run.status),
        streamToken: stream.token,
        streamTokenExpiresAt: stream.expiresAt,
      },
      200,
    );
  });
}

/** The ends that Output's run reports as `failed` (Temporal's client throws WorkflowFailedError for each). */
const FAILED_IN_OUTPUTS_RUN: ReadonlySet<RunStatus> = new Set(["failed", "cancelled", "terminated", "timed_out"]);

/**
 * The `status` of a run's answer: Output's run says `completed` or `failed`, nothing else (its
 * client types it so, and a CLI that treats other words as success exits 0 on `cancelled`: Output's
 * CLI counts `canceled`, one L, among its error statuses, while Temporal's client, and so Output's
 * server, spells it `cancelled`). A run that ended cancelled, terminated or timed out is `failed`
 * here too; `runStatus` says which.
 */
export function runAnswerStatus(status: RunStatus): { status: RunStatus; runStatus: RunStatus } {
  return { status: FAILED_IN_OUTPUTS_RUN.has(status) ? "failed" : status, runStatus: status };
}
