/**
 * Operators stopping a tenant's runs: one run, or every open run of an organization a page at a
 * time. What an operator suspending an abusive tenant needs: a suspended organization's own
 * credentials are refused (403 organization_suspended), its terminate included, and its runs go
 * on. Each terminate is the tenant terminate's (`terminateRow`): the host terminates the run in
 * Temporal, and its end reaches the D1 row, the log and streams, the credits and the webhooks
 * through the run's DO as every end does. docs/authentication.md#suspended-organizations.
 */
import type { App } from "../../app-env.ts";
import { encodePageCursor, type PageCursor } from "../../db/page-cursor.ts";
import type { Run } from "../../db/schema.ts";
import { countRunsOfOrganization, listRunsOfOrganization } from "../../db/workflow-runs.ts";
import { ApiError } from "../../errors.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { getRunOrThrow } from "../../services/runs.ts";
import { isTerminal, type RunStatus } from "../../shared/run-status.ts";
import { ended, terminatedBody, terminateRow } from "../workflow/stop.ts";
import { parseWorkflowIdParam } from "../workflow/params.ts";
import { beforeCursor, organizationOrThrow } from "./organizations.ts";
import { operatorTerminateBody, terminateRunsBody } from "./schemas.ts";

/** Before the operator's reason in the run's history: the tenant reads it there, and sees the terminate was not its own. */
export const OPERATOR_TERMINATE_PREFIX = "terminated by the operator: ";

/** Rows not ended yet: the statuses cancel-by-workflow takes as open too (a continued-as-new row's workflow runs on). */
const OPEN: RunStatus[] = ["scheduled", "running", "continued_as_new"];

/**
 * Host calls one terminate-runs makes at once: a Worker invocation keeps at most 6 connections
 * open, and a call queued behind them would spend its HOST_CALL_WAIT_MS waiting for a connection.
 */
const TERMINATE_RUNS_AT_ONCE = 6;

type Outcome = "terminated" | "already_ended" | "not_started" | "error";
interface Result {
  workflowId: string;
  runId: string | null;
  status: Outcome;
  code?: string;
  message?: string;
}

/** One run of a terminate-runs page: ended ones (Temporal closed them before the row knew) are settled too. */
async function terminateOne(env: Env, run: Run, reason: string): Promise<Result> {
  try {
    return { ...(await terminateRow(env, run, reason)), status: "terminated" };
  } catch (err) {
    const base = { workflowId: run.temporalWorkflowId, runId: run.temporalRunId };
    if (!(err instanceof ApiError)) throw err;
    if (err.code === "run_ended") return { ...base, status: "already_ended" };
    if (err.code === "run_not_started") return { ...base, status: "not_started", code: err.code, message: err.message };
    return { ...base, status: "error", code: err.code, message: err.message };
  }
}

const cursorOf = (run: Run): PageCursor => ({ createdAt: run.createdAt, id: run.id });
/** A cursor before every run: where a call goes on when the first run it took could not be settled. */
const FROM_THE_START: PageCursor = { createdAt: "", id: "" };

export function registerRuns(app: App) {
  /**
   * One run of the organization, as its own POST /workflow/:id/terminate would, whatever the
   * organization's status: the same answers (200, 404 run_ended for a run that has ended, 409
   * run_not_started for one whose start is still being retried), the reason marked as the operator's.
   */
  app.post("/admin/v1/organizations/:orgId/runs/:workflowId/terminate", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const workflowId = parseWorkflowIdParam(c.req.param("workflowId"));
    const reason = OPERATOR_TERMINATE_PREFIX + (await readJson(c, operatorTerminateBody)).reason;
    // The primary's row: an unknown id or another organization's run is 404 run_not_found, and never names (creates) a DO.
    const run = await getRunOrThrow(c.env, org.id, workflowId);
    if (isTerminal(run.status)) throw ended(run);
    return c.json(terminatedBody(await terminateRow(c.env, run, reason), reason));
  });

  /**
   * The organization's open runs, oldest first, at most `limit` per call: `next` (the `after` of
   * the following call) is past every run this call settled and before the first it could not
   * (its start still being retried, the host unreachable), so a call again takes that run again;
   * `remaining` counts the open runs it did not terminate. Once the host is unreachable the call
   * stops trying. Calling it again is harmless: a run already terminated is `already_ended`.
   */
  app.post("/admin/v1/organizations/:orgId/terminate-runs", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const body = await readJson(c, terminateRunsBody);
    const after = beforeCursor(body.after, "after");
    const reason = OPERATOR_TERMINATE_PREFIX + body.reason;
    const page = await listRunsOfOrganization(c.env.DB, org.id, OPEN, after, body.limit);
    const results: Result[] = [];
    for (let i = 0; i < page.length; i += TERMINATE_RUNS_AT_ONCE) {
      results.push(...(await Promise.all(page.slice(i, i + TERMINATE_RUNS_AT_ONCE).map((run) => terminateOne(c.env, run, reason)))));
      // The host is down or hangs: every further call would wait out HOST_CALL_WAIT_MS to fail too.
      if (results.some((r) => r.code === "host_unavailable")) break;
    }
    const unsettled = results.findIndex((r) => r.status === "not_started" || r.status === "error");
    // The last run this call tried; those after it (the host gone) are counted in `remaining` with the rest.
    const pageEnd = page[results.length - 1];
    const remaining =
      results.filter((r) => r.status === "not_started" || r.status === "error").length +
      (pageEnd ? await countRunsOfOrganization(c.env.DB, org.id, OPEN, cursorOf(pageEnd)) : 0);
    // Past the runs settled in order; the first one not settled, and those after it in this page, are taken again.
    const resumeAt = unsettled === -1 ? (pageEnd ? cursorOf(pageEnd) : after) : unsettled > 0 ? cursorOf(page[unsettled - 1]!) : after;
    const next = remaining > 0 ? encodePageCursor(resumeAt ?? FROM_THE_START) : null;
    const summary = Object.fromEntries(
      (["terminated", "already_ended", "not_started", "error"] as const).map((s) => [s, results.filter((r) => r.status === s).length]),
    );
    return c.json({ reason, results, summary, remaining, next });
  });
}
