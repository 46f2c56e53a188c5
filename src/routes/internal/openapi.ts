/** OpenAPI description of the routes only the Node host calls (`/internal/...`), signed with the shared secret. */
import { z } from "zod";
import type { App } from "../../app-env.ts";
import { documentRoute } from "../../openapi/document.ts";
import { catalogPublish, runEventBatch, runEventPush, runEventPushResult } from "../../shared/host-api.ts";
import { workflowIdParam } from "../workflow/schemas.ts";

const tag = "Internal (host → edge)";

export function documentInternalApi(app: App) {
  documentRoute(app, {
    method: "post",
    path: "/internal/catalog",
    tag,
    auth: "hostSignature",
    summary: "The host publishes its workflow catalog",
    body: catalogPublish,
    responses: { 200: { description: "Published", schema: z.object({ published: z.number() }) } },
    errors: ["invalid_json", "invalid_request"],
  });
  documentRoute(app, {
    method: "post",
    path: "/internal/runs/:id/events",
    tag,
    auth: "hostSignature",
    summary: "The host pushes a batch of run events",
    params: z.object({ id: workflowIdParam }),
    body: runEventBatch,
    responses: {
      200: {
        description: "Recorded (`dropped`: no run was started through the edge under this workflow id, nothing was kept)",
        schema: z.object({ accepted: z.number(), duplicates: z.number(), dropped: z.boolean().optional() }),
      },
    },
    errors: ["invalid_json", "invalid_request", "run_not_found"],
  });
  documentRoute(app, {
    method: "post",
    path: "/internal/run-events",
    tag,
    auth: "hostSignature",
    summary: "The host pushes the events of many runs at once",
    body: runEventPush,
    responses: { 200: { description: "Recorded", schema: runEventPushResult } },
    errors: ["invalid_json", "invalid_request", "host_unavailable"],
  });
}
