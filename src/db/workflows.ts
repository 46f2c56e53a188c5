import { and, asc, eq, isNull, or } from "drizzle-orm";
import type { CatalogEntry } from "../shared/host-api.ts";
import { setBounded } from "../shared/bounded-map.ts";
import { foldForSearch } from "../shared/names.ts";
import { db } from "./client.ts";
import { workflows } from "./schema.ts";

/** Published code workflows the organization may run: the host's (global) ones and its own. */
const runnableBy = (organizationId: string) =>
  and(
    eq(workflows.kind, "code"),
    eq(workflows.published, true),
    or(isNull(workflows.organizationId), eq(workflows.organizationId, organizationId)),
  );

/**
 * A runnable code workflow by name (Workflow API) or by id (Workflow Runs API). Prompt workflows
 * run by id through /api/v1/run.
 */
export async function findRunnableWorkflow(d1: D1Database, organizationId: string, by: { name: string } | { id: string }) {
  const match = "name" in by ? eq(workflows.name, by.name) : eq(workflows.id, by.id);
  return (
    (
      await db(d1)
        .select()
        .from(workflows)
        .where(and(match, runnableBy(organizationId)))
        .limit(1)
    )[0] ?? null
  );
}

/**
 * How long a start may use a catalog entry read earlier by the same isolate. Within this time a
 * start can see the catalog as it was: a workflow the host stopped publishing is still accepted
 * (the host then refuses the start, so the run is undone and reported failed: nothing runs), and
 * an input schema changed by the host may be checked against its previous version. The isolate
 * that takes a catalog publish drops its entries at once; a workflow not found is never cached.
 */
export const CATALOG_CACHE_TTL_MS = 10_000;
const CATALOG_CACHE_MAX = 1_000;
type RunnableWorkflow = NonNullable<Awaited<ReturnType<typeof findRunnableWorkflow>>>;
const runnableCache = new Map<string, { workflow: RunnableWorkflow; expires: number }>();
/** Bumped by every catalog change this isolate makes: a read that began before it is not cached. */
let catalogGeneration = 0;

/** findRunnableWorkflow through the isolate cache (see CATALOG_CACHE_TTL_MS): the start path's read. */
export async function findRunnableWorkflowCached(d1: D1Database, organizationId: string, by: { name: string } | { id: string }) {
  const key = `${organizationId}\u0000${"name" in by ? `name:${by.name}` : `id:${by.id}`}`;
  const hit = runnableCache.get(key);
  if (hit && hit.expires > Date.now()) return hit.workflow;
  const generation = catalogGeneration;
  const workflow = await findRunnableWorkflow(d1, organizationId, by);
  if (!workflow) {
    runnableCache.delete(key);
    return null;
  }
  if (generation === catalogGeneration) {
    setBounded(runnableCache, key, { workflow, expires: Date.now() + CATALOG_CACHE_TTL_MS }, CATALOG_CACHE_MAX);
  }
  return workflow;
}

/** Drops this isolate's cached catalog entries (after a publish; tests that edit the catalog directly). */
export function forgetCachedCatalog(): void {
  catalogGeneration++;
  runnableCache.clear();
}

export async function findWorkflowById(d1: D1Database, id: string) {
  return (await db(d1).select().from(workflows).where(eq(workflows.id, id)).limit(1))[0] ?? null;
}

/** Every published code workflow the organization may run, by name. */
export async function listRunnableWorkflows(d1: D1Database, organizationId: string) {
  return db(d1).select().from(workflows).where(runnableBy(organizationId)).orderBy(asc(workflows.name));
}

/**
 * The most rows of each table `foldUnfoldedNames` folds per catalog publish, so that its statement
 * stays small (one JSON value of about this many names); more wait for the next publish.
 */
export const UNFOLDED_NAMES_PER_PUBLISH = 500;

/**
 * Statements that write the fold of names not folded yet (name_folded NULL: rows with a non-ASCII
 * name from before migration 0026, and rows an older Worker wrote or renamed), in `workflows` and
 * `workflow_former_names`: folding needs JS (foldForSearch), and the catalog publish (each host
 * registration) is a write that runs after every deploy. One UPDATE per table, the folds bound as
 * one JSON array; a row renamed since it was read (its name no longer the one folded) is left for
 * the next publish.
 */
async function foldUnfoldedNames(d1: D1Database): Promise<D1PreparedStatement[]> {
  const [current, former] = await d1.batch<{ key: string; name: string }>([
    d1.prepare("SELECT id AS key, name FROM workflows WHERE name_folded IS NULL LIMIT ?").bind(UNFOLDED_NAMES_PER_PUBLISH),
    d1
      .prepare("SELECT workflow_id AS key, name FROM workflow_former_names WHERE name_folded IS NULL LIMIT ?")
      .bind(UNFOLDED_NAMES_PER_PUBLISH),
  ]);
  const folds = (rows: { key: string; name: string }[]) => JSON.stringify(rows.map((r) => [r.key, r.name, foldForSearch(r.name)]));
  const fold = (table: string, keyColumn: string, rows: { key: string; name: string }[]) =>
    d1
      .prepare(
        `UPDATE ${table} SET name_folded = f.value ->> 2 FROM json_each(?) AS f
         WHERE ${table}.${keyColumn} = f.value ->> 0 AND ${table}.name = f.value ->> 1 AND ${table}.name_folded IS NULL`,
      )
      .bind(folds(rows));
  return [
    ...(current!.results.length > 0 ? [fold("workflows", "id", current!.results)] : []),
    ...(former!.results.length > 0 ? [fold("workflow_former_names", "workflow_id", former!.results)] : []),
  ];
}

/**
 * Replaces the host's code workflows with what it publishes. Workflows that disappear from the
 * host are unpublished, not deleted, so old runs keep their catalog row.
 */
export async function upsertCodeCatalog(d1: D1Database, entries: CatalogEntry[]): Promise<void> {
  const now = new Date().toISOString();
  const statements: D1PreparedStatement[] = [
    d1.prepare("UPDATE workflows SET published = 0, updated_at = ? WHERE organization_id IS NULL AND kind = 'code'").bind(now),
  ];
  for (const entry of entries) {
    statements.push(
      d1
        .prepare(
          `INSERT INTO workflows (id, organization_id, name, name_folded, kind, description, input_schema, output_schema, handlers, published, created_at, updated_at)
           VALUES (?, NULL, ?, ?, 'code', ?, ?, ?, ?, 1, ?, ?)
           ON CONFLICT (name) WHERE organization_id IS NULL DO UPDATE SET
             name_folded = excluded.name_folded, description = excluded.description, input_schema = excluded.input_schema,
             output_schema = excluded.output_schema, handlers = excluded.handlers, published = 1, updated_at = excluded.updated_at`,
        )
        .bind(
          crypto.randomUUID(),
          entry.name,
          foldForSearch(entry.name),
          entry.description,
          JSON.stringify(entry.inputSchema),
          JSON.stringify(entry.outputSchema),
          JSON.stringify(entry.handlers),
          now,
          now,
        ),
    );
  }
  statements.push(...(await foldUnfoldedNames(d1)));
  // One batch is one transaction: readers never see a half-replaced catalog.
  forgetCachedCatalog();
  try {
    await d1.batch(statements);
  } finally {
    forgetCachedCatalog();
  }
}
