import type { Context } from "hono";
import type { App, AppEnv } from "../../app-env.ts";
import { listRunnableWorkflows } from "../../db/workflows.ts";
import { ApiError, quotedId } from "../../errors.ts";
import { CATALOG_ID, catalogIdSchema } from "./schemas.ts";

async function catalogBody(c: Context<AppEnv>) {
  const rows = await listRunnableWorkflows(c.env.DB, c.get("auth").organizationId);
  return {
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
  };
}

/**
 * GET /workflow/catalog: every workflow the caller may run, with its input and output JSON Schema.
 * GET /workflow/catalog/:id: the same for catalog `:id`; Outrider has one catalog, CATALOG_ID
 * (`outrider`), so any other id is 404 CatalogNotFoundError (a malformed one 400).
 */
export function registerCatalog(app: App) {
  app.get("/workflow/catalog", async (c) => c.json(await catalogBody(c)));
  app.get("/workflow/catalog/:id", async (c) => {
    const id = c.req.param("id");
    if (!catalogIdSchema.safeParse(id).success)
      throw new ApiError("invalid_request", "invalid catalog id: letters, digits and _.@- only, at most 128");
    if (id !== CATALOG_ID)
      throw new ApiError("catalog_not_found", `no catalog ${quotedId(id)}: this deployment has one catalog, "${CATALOG_ID}"`);
    return c.json(await catalogBody(c));
  });
}
