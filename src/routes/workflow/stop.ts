import { z } from "zod";
import type { App } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { HostClient } from "../../host-client.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { getRunOrThrow, settleRun } from "../../services/runs.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { parseWorkflowIdParam } from "./params.ts";

const terminateBody = z.object({ reason: z.string().max(1000).optional() });

/**
 * PATCH /workflow/:id/stop: graceful (Temporal cancellation; the workflow's cleanup runs and the
 * run ends `cancelled`). POST /workflow/:id/terminate: immediate, optional `reason`. Both answer
 * 409 `run_finished` for a run that already ended.
 */
export function registerStop(app: App) {
  app.patch("/workflow/:id/stop", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const run = await settleRun(c.env, await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId));
    if (isTerminal(run.status)) throw new ApiError("run_finished", `run ${workflowId} already ended (${run.status})`);
    await new HostClient(c.env).cancel(workflowId);
    return c.json({ workflowId, runId: run.temporalRunId, status: "cancelling" }, 202);
  });

  app.post("/workflow/:id/terminate", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const text = await c.req.text();
    const { reason } = text.trim() === "" ? { reason: undefined } : await readJson(c, terminateBody);
    const run = await settleRun(c.env, await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId));
    if (isTerminal(run.status)) throw new ApiError("run_finished", `run ${workflowId} already ended (${run.status})`);
    await new HostClient(c.env).terminate(workflowId, reason);
    return c.json({ workflowId, runId: run.temporalRunId, status: "terminated", reason: reason ?? null });
  });
}
