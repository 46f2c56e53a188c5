import type { App } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { findRunNearby } from "../../services/runs.ts";
import { mintStreamToken } from "../../stream-tokens.ts";
import { parseWorkflowIdParam } from "./params.ts";

/**
 * POST /workflow/:id/stream-token: a fresh run-scoped token for `?token=` on the run's streams
 * (for a browser whose token from start/run has expired). Needs an API key, not a token.
 */
export function registerStreamToken(app: App) {
  app.post("/workflow/:id/stream-token", async (c) => {
    const auth = c.get("auth");
    if (!auth.apiKeyId) throw new ApiError("unauthorized", "minting a stream token needs an API key");
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    await findRunNearby(c.env, auth.organizationId, workflowId); // ownership: never changes, a replica may answer
    const { token, expiresAt } = await mintStreamToken(c.env.STREAM_TOKEN_SECRET, { organizationId: auth.organizationId, workflowId });
    return c.json({ workflowId, token, expiresAt });
  });
}
