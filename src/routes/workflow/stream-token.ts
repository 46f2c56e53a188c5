import { createMiddleware } from "hono/factory";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { ownedRun } from "../../middleware/owned-run/index.ts";
import { MINTING_NEEDS_API_KEY, mintingClaims, mintStreamToken } from "../../stream-tokens.ts";

/** A stream token cannot mint another: 401 before the ownership read. */
const needsApiKey = createMiddleware<AppEnv>(async (c, next) => {
  if (!c.get("auth").apiKeyId) throw new ApiError("unauthorized", MINTING_NEEDS_API_KEY);
  await next();
});

/**
 * POST /workflow/:id/stream-token: a fresh run-scoped token for `?token=` on the run's streams
 * (for a browser whose token from start/run has expired). Needs an API key, not a token.
 * Ownership (ownedRun) never changes once the row exists, so a replica may answer it.
 */
export function registerStreamToken(app: App) {
  app.post("/workflow/:id/stream-token", needsApiKey, ownedRun(), async (c) => {
    const { workflowId } = c.get("ownedRun");
    const { token, expiresAt } = await mintStreamToken(c.env.STREAM_TOKEN_SECRET, mintingClaims(c.get("auth"), workflowId));
    return c.json({ workflowId, token, expiresAt });
  });
}
