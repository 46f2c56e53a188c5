/**
 * Routes only the Node host calls, signed with the shared secret: run events and the catalog.
 */
import type { App } from "../../app-env.ts";
import { documentInternalApi } from "./openapi.ts";
import { upsertCodeCatalog } from "../../db/workflows.ts";
import { ApiError } from "../../errors.ts";
import { INTERNAL_MAX_JSON_DEPTH, readJson } from "../../middleware/json-body/index.ts";
import { hostSignature } from "../../middleware/host-signature/index.ts";
import { recordRunEvents } from "../../run-stream-client.ts";
import { catalogPublish, runEventBatch } from "../../shared/host-api.ts";
import { parseWorkflowIdParam } from "../workflow/params.ts";

export function registerInternalApi(app: App) {
  app.use("/internal/*", hostSignature());

  app.post("/internal/catalog", async (c) => {
    const body = await readJson(c, catalogPublish, INTERNAL_MAX_JSON_DEPTH);
    await upsertCodeCatalog(c.env.DB, body.workflows);
    return c.json({ published: body.workflows.length });
  });

  app.post("/internal/runs/:id/events", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const body = await readJson(c, runEventBatch, INTERNAL_MAX_JSON_DEPTH);
    const recorded = await recordRunEvents(c.env, workflowId, body.events, c.get("hostNonce"));
    if (recorded.replayed) throw new ApiError("unauthorized", "internal route: replayed signature (this signed request was already used)");
    return c.json({ accepted: recorded.accepted, duplicates: recorded.duplicates });
  });
  documentInternalApi(app);
}
