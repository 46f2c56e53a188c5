import type { App } from "../../app-env.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { startRun } from "../../services/runs.ts";
import { startWorkflowBody } from "./schemas.ts";

/** POST /workflow/start: starts a run and answers at once with its ids. */
export function registerStart(app: App) {
  app.post("/workflow/start", async (c) => {
    const body = await readJson(c, startWorkflowBody);
    const started = await startRun(c.env, c.get("auth").organizationId, body.workflowName, body.input ?? {});
    return c.json(started, 200);
  });
}
