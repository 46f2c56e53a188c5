import { z } from "zod";
import type { App } from "../app-env.ts";
import { documentRoute } from "../openapi/document.ts";

/** GET /health: liveness of the edge, without auth. */
export function registerHealth(app: App) {
  app.get("/health", (c) => c.json({ ok: true, service: "outrider-edge" }));
  documentRoute(app, {
    method: "get",
    path: "/health",
    tag: "Health",
    auth: "none",
    summary: "Liveness of the edge",
    responses: { 200: { description: "OK", schema: z.object({ ok: z.boolean(), service: z.string() }) } },
  });
}
