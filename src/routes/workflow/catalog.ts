import type { App } from "../../app-env.ts";
import { listRunnableWorkflows } from "../../db/workflows.ts";

/** GET /workflow/catalog: every workflow the caller may run, with its input and output JSON Schema. */
export function registerCatalog(app: App) {
  app.get("/workflow/catalog", async (c) => {
    const rows = await listRunnableWorkflows(c.env.DB, c.get("auth").organizationId);
    return c.json({
      workflows: rows.map((w) => ({
        // The Workflow Runs API names workflows by this id.
        id: w.id,
        name: w.name,
        description: w.description,
        kind: w.kind,
        inputSchema: w.inputSchema,
        outputSchema: w.outputSchema,
        signals: w.handlers.signals,
        queries: w.handlers.queries,
        updates: w.handlers.updates,
      })),
    });
  });
}
