/**
 * Routes only the Node host calls, signed with the shared secret: run events and the catalog.
 */
import type { App } from "../../app-env.ts";
import { documentInternalApi } from "./openapi.ts";
import { upsertCodeCatalog } from "../../db/workflows.ts";
import { ApiError, errorBody, type Issue, issueText } from "../../errors.ts";
import { INTERNAL_JSON, readJson } from "../../middleware/json-body/index.ts";
import { hostSignature } from "../../middleware/host-signature/index.ts";
import { recordRunEvents } from "../../run-stream-client.ts";
import { EDGE_PATHS, type RunEventPushPartialFailure, catalogPublish, runEventBatch, runEventPush } from "../../shared/host-api.ts";
import { inputSchemaProblem } from "../workflow/input-validation.ts";
import { parseWorkflowIdParam } from "../workflow/params.ts";
import { workflowIdParam } from "../workflow/schemas.ts";

export function registerInternalApi(app: App) {
  app.use("/internal/*", hostSignature());

  /**
   * The host's catalog, replacing the code workflows whole. Refused whole (400, nothing written)
   * when a workflow's input schema is one the start path's validator cannot run: taken, it made
   * every start of that workflow a 500. The host logs the refusal and tries again.
   */
  app.post("/internal/catalog", async (c) => {
    const body = await readJson(c, catalogPublish, INTERNAL_JSON);
    const issues: Issue[] = body.workflows.flatMap((workflow, i) => {
      const problem = inputSchemaProblem(workflow.inputSchema);
      return problem ? [{ path: `workflows.${i}.inputSchema`, message: problem }] : [];
    });
    if (issues.length > 0) {
      throw new ApiError(
        "invalid_request",
        `input schemas the edge cannot check inputs against: ${issueText(issues, (issue) => `${issue.path}: ${issue.message}`)}`,
        issues,
      );
    }
    await upsertCodeCatalog(c.env.DB, body.workflows);
    return c.json({ published: body.workflows.length });
  });

  app.post("/internal/runs/:id/events", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const body = await readJson(c, runEventBatch, INTERNAL_JSON);
    const recorded = await recordRunEvents(c.env, workflowId, body.events, c.get("hostNonce"));
    if (recorded.replayed) throw new ApiError("unauthorized", "internal route: replayed signature (this signed request was already used)");
    return c.json({ accepted: recorded.accepted, duplicates: recorded.duplicates, ...(recorded.dropped ? { dropped: true } : {}) });
  });

  /**
   * Events of many runs in one signed push (what the host sends). The whole push is validated
   * first (one bad event: 400, nothing recorded). Then each run's events go to its RunStream in one
   * call, all runs in parallel; each DO claims the push's nonce, so a replayed push records
   * nothing anywhere. A run listed twice is merged (its events in order). A run the edge never
   * accepted (started directly in Temporal) is `dropped` by its DO, which keeps nothing: counted in
   * the answer, and the push still succeeds, so the host does not retry it.
   */
  app.post(EDGE_PATHS.runEventsBatch, async (c) => {
    const body = await readJson(c, runEventPush, INTERNAL_JSON);
    const byRun = new Map<string, (typeof body.runs)[number]["events"]>();
    for (const [i, run] of body.runs.entries()) {
      const checked = workflowIdParam.safeParse(run.workflowId);
      if (!checked.success) {
        const why = checked.error.issues[0]?.message ?? "not a workflow id";
        throw new ApiError("invalid_request", `a pushed run has a malformed workflowId: ${why}`, [
          { path: `runs.${i}.workflowId`, message: why },
        ]);
      }
      byRun.set(run.workflowId, [...(byRun.get(run.workflowId) ?? []), ...run.events]);
    }
    const nonce = c.get("hostNonce");
    const runs = [...byRun];
    const results = await Promise.allSettled(runs.map(([workflowId, events]) => recordRunEvents(c.env, workflowId, events, nonce)));
    const failedRuns = runs.filter((_run, i) => results[i]!.status === "rejected").map(([workflowId]) => workflowId);
    if (failedRuns.length > 0) {
      const firstError = results.find((r) => r.status === "rejected")!.reason;
      console.error(
        JSON.stringify({
          level: "error",
          message: "run event push partly failed",
          failedRuns,
          runs: byRun.size,
          error: String(firstError),
        }),
      );
      // The other runs are recorded: naming the failed ones lets the host retry only those, so a run
      // its DO cannot take does not hold up the rest (an older host retries the whole push, and the
      // recorded events come back as duplicates).
      const message = `could not record the events of ${failedRuns.length} of ${byRun.size} runs; retry those (failedRuns)`;
      const partial: RunEventPushPartialFailure = { failedRuns };
      return c.json({ ...errorBody("host_unavailable", message, c.get("requestId") ?? ""), ...partial }, 503, { "retry-after": "1" });
    }
    const recorded = results.map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof recordRunEvents>>>).value);
    if (recorded.some((r) => r.replayed))
      throw new ApiError("unauthorized", "internal route: replayed signature (this signed request was already used)");
    return c.json({
      runs: byRun.size,
      accepted: recorded.reduce((n, r) => n + r.accepted, 0),
      duplicates: recorded.reduce((n, r) => n + r.duplicates, 0),
      dropped: recorded.filter((r) => r.dropped).length,
    });
  });
  documentInternalApi(app);
}
