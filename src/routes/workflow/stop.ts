import { z } from "zod";
import type { App } from "../../app-env.ts";
import { HostClient } from "../../host-client.ts";
import { readJsonOrEmpty } from "../../middleware/json-body/index.ts";
import { assertRunOpen, getRunOrThrow } from "../../services/runs.ts";
import { parseWorkflowIdParam } from "./params.ts";

const terminateBody = z.object({ reason: z.string().max(1000).optional() });

/**
 * PATCH /workflow/:id/stop: graceful (Temporal cancellation; the workflow's cleanup runs and the
 * run ends `cancelled`). POST /workflow/:id/terminate: immediate, optional `reason`. Both answer
 * 409 `run_finished` for a run that already ended: from the D1 row when it knows, else from the
 * host, which checks Temporal before it acts.
 */
export function registerStop(app: App) {
  app.patch("/workflow/:id/stop", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const run = await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId);
    assertRunOpen(run, "stop");
    await new HostClient(c.env).cancel(workflowId);
    return c.json({ workflowId, runId: run.temporalRunId, status: "cancelling" }, 202);
  });

  app.post("/workflow/:id/terminate", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const { reason } = await readJsonOrEmpty(c, terminateBody);
    const run = await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId);
    assertRunOpen(run, "termination");
    await new HostClient(c.env).terminate(workflowId, reason);
    return c.json({ workflowId, runId: run.temporalRunId, status: "terminated", reason: reason ?? null });
  });
}
