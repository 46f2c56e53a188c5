import type { App } from "../app-env.ts";

/** GET /health: liveness of the edge, without auth. */
export function registerHealth(app: App) {
  app.get("/health", (c) => c.json({ ok: true, service: "outrider-edge" }));
}
