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
 * once). Only when the wait itself failed (the call into the DO lost after it accepted the run)
 * is such a run 202 `scheduled` with the Location, at once.
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
    const stream = await mintStreamToken(c.env.STREAM_TOKEN_SECRET, mintingClaims(c.get("auth"), run.temporalWorkflowId));
    const location = `/workflow/${encodeURIComponent(run.temporalWorkflowId)}/result`;
    if (run.status === "scheduled" && waitFailed) {
      // Accepted, and the host has not confirmed the start, and there was no waiting for it: the
      // run's DO starts it as soon as it can (docs/start-path.md). 202, not an error: a retry would
      // start a second run. (With a wait, a start still unconfirmed at its end is the 408 below.)
      c.header("location", location);
      return c.json(
        { ...(await outputResult(c.env, run, attributes)), streamToken: stream.token, streamTokenExpiresAt: stream.expiresAt },
        202,
      );
    }
    if (!isTerminal(run.status)) {
      throw new ApiError(
        "wait_timed_out",
        `Workflow execution exceeded timeout for synchronous execution. The run goes on: GET /workflow/${run.temporalWorkflowId}/result once it ends`,
        undefined,
        { location },
        run.temporalWorkflowId,
      );
    }
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
