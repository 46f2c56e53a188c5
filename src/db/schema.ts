/**
 * D1 schema (drizzle). The source of migrations/: change this file, then `npm run db:generate`.
 * Every table that holds tenant data carries organization_id, and every query filters on it.
 */
import { sql } from "drizzle-orm";
import { index, integer, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import type { RunStatus } from "../shared/run-status.ts";

const timestamps = {
  createdAt: text("created_at").notNull().default(sql`(strftime('%Y-%m-%dT%H:%M:%fZ','now'))`),
  updatedAt: text("updated_at").notNull().default(sql`(strftime('%Y-%m-%dT%H:%M:%fZ','now'))`),
};

export const organizations = sqliteTable("organizations", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  ...timestamps,
});

/** API keys `<prefix>_<id>_<secret>`: only the SHA-256 of the secret is kept. */
export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    organizationId: text("organization_id")
      .notNull()
      .references(() => organizations.id),
    prefix: text("prefix").notNull(),
    secretSha256: text("secret_sha256").notNull(),
    name: text("name").notNull(),
    scopes: text("scopes", { mode: "json" }).$type<string[]>().notNull().default(sql`'["*"]'`),
    /** Requests per minute for this key; NULL means RATE_LIMIT_PER_MINUTE. */
    rateLimitPerMinute: integer("rate_limit_per_minute"),
    revokedAt: text("revoked_at"),
    ...timestamps,
  },
  (t) => [index("api_keys_organization_idx").on(t.organizationId)],
);

/**
 * The workflow catalog. Code workflows published by the host have organization_id NULL (every
 * organization may run them); organization-owned workflows come later with prompt workflows.
 */
export const workflows = sqliteTable(
  "workflows",
  {
    id: text("id").primaryKey(),
    organizationId: text("organization_id").references(() => organizations.id),
    name: text("name").notNull(),
    kind: text("kind", { enum: ["code", "prompt"] }).notNull(),
    description: text("description").notNull().default(""),
    inputSchema: text("input_schema", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    outputSchema: text("output_schema", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    /** Signal, query and update handler names a client may call. */
    handlers: text("handlers", { mode: "json" })
      .$type<{ signals: string[]; queries: string[]; updates: string[] }>()
      .notNull()
      .default(sql`'{"signals":[],"queries":[],"updates":[]}'`),
    published: integer("published", { mode: "boolean" }).notNull().default(true),
    ...timestamps,
  },
  (t) => [
    uniqueIndex("workflows_global_name_uq").on(t.name).where(sql`organization_id IS NULL`),
    uniqueIndex("workflows_org_name_uq").on(t.organizationId, t.name),
  ],
);

export const runs = sqliteTable(
  "runs",
  {
    /** Our run id (UUID), minted at the edge. */
    id: text("id").primaryKey(),
    organizationId: text("organization_id")
      .notNull()
      .references(() => organizations.id),
    workflowId: text("workflow_id")
      .notNull()
      .references(() => workflows.id),
    workflowName: text("workflow_name").notNull(),
    /** Temporal workflow id, `<workflowName>-<uuid>`; the Workflow API's `workflowId`. */
    temporalWorkflowId: text("temporal_workflow_id").notNull(),
    /** Temporal run id of the latest execution we know of. */
    temporalRunId: text("temporal_run_id"),
    status: text("status").$type<RunStatus>().notNull(),
    input: text("input", { mode: "json" }).notNull(),
    output: text("output", { mode: "json" }),
    error: text("error"),
    /** Totals of the run's attributes (cost in USD), kept for listing and billing. */
    costTotal: real("cost_total").notNull().default(0),
    tokensInput: integer("tokens_input").notNull().default(0),
    tokensOutput: integer("tokens_output").notNull().default(0),
    tokensTotal: integer("tokens_total").notNull().default(0),
    httpRequests: integer("http_requests").notNull().default(0),
    startedAt: text("started_at"),
    completedAt: text("completed_at"),
    ...timestamps,
  },
  (t) => [
    uniqueIndex("runs_temporal_workflow_id_uq").on(t.temporalWorkflowId),
    index("runs_org_created_idx").on(t.organizationId, t.createdAt),
    index("runs_org_status_idx").on(t.organizationId, t.status),
  ],
);

export type Run = typeof runs.$inferSelect;
export type Workflow = typeof workflows.$inferSelect;
export type ApiKey = typeof apiKeys.$inferSelect;
