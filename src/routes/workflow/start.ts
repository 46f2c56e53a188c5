import type { App } from "../../app-env.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { startRun } from "../../services/runs.ts";
import { mintStreamToken } from "../../stream-tokens.ts";
import { startWorkflowBody } from "./schemas.ts";

/** POST /workflow/start: starts a run and answers at once with its ids. */
export function registerStart(app: App) {
  app.post("/workflow/start", async (c) => {
    const body = await readJson(c, startWorkflowBody);
    const organizationId = c.get("auth").organizationId;
    const started = await startRun(c.env, organizationId, body.workflowName, body.input ?? {}, { idempotency: c.get("idempotency") });
    const stream = await mintStreamToken(c.env.STREAM_TOKEN_SECRET, { organizationId, workflowId: started.workflowId });
    return c.json({ ...started, streamToken: stream.token, streamTokenExpiresAt: stream.expiresAt }, 200);
  });
}
