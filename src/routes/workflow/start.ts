import type { App } from "../../app-env.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { startWorkflowBody } from "./schemas.ts";
import { startFromRequest } from "./start-request.ts";

/** POST /workflow/start: starts a run and answers at once with its ids. */
export function registerStart(app: App) {
  app.post("/workflow/start", async (c) => {
    const { started, streamToken, streamTokenExpiresAt } = await startFromRequest(c, await readJson(c, startWorkflowBody));
    return c.json({ ...started, streamToken, streamTokenExpiresAt }, 200);
  });
}
