import type { App } from "../../app-env.ts";
import { readRun, resultPayload } from "../../services/runs.ts";
import { parseWorkflowIdParam } from "./params.ts";

/** GET /workflow/:id/result: the result payload; `status` says whether it is final. */
export function registerResult(app: App) {
  app.get("/workflow/:id/result", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const { run, attributes } = await readRun(c.env, c.get("auth").organizationId, workflowId, { attributes: true });
    return c.json(await resultPayload(c.env, run, attributes));
  });
}
