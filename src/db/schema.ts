/**
 * D1 schema (drizzle). The source of migrations/: change this file, then `npm run db:generate`.
 * Every table that holds tenant data carries organization_id, and every query filters on it.
 * Triggers, which drizzle does not model, are custom migrations (`drizzle-kit generate --custom`):
 * 0009_credit_triggers.sql keeps credits in step with the `runs` rows (src/db/credits.ts).
 */
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, real, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
import type { ErrorDetails } from "../shared/error-details.ts";
import type { RunStatus } from "../shared/run-status.ts";

const timestamps = {
  createdAt: text("created_at").notNull().default(sql`(strftime('%Y-%m-%dT%H:%M:%fZ','now'))`),
  updatedAt: text("updated_at").notNull().default(sql`(strftime('%Y-%m-%dT%H:%M:%fZ','now'))`),
};

export const organizations = sqliteTable(
  "organizations",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    /**
     * Credits (1 credit = 1 LLM token). NULL: the organization is not metered (no 402 ever); the
     * first grant through the admin API turns metering on. See docs/credits.md.
     */
    creditBalance: integer("credit_balance"),
    /** Credits held by runs in flight; available = balance - reserved. */
    creditsReserved: integer("credits_reserved").notNull().default(0),
    /**
     * The organization's runs that have not ended (`scheduled`, `running`), kept by triggers on
     * `runs` (migration 0015); a start is refused past MAX_OPEN_RUNS_PER_ORGANIZATION.
     */
    openRuns: integer("open_runs").notNull().default(0),
    /**
     * When an operator suspended the organization (admin API), null while it is active: every
     * tenant request of a suspended organization is 403 `organization_suspended` (migration 0025;
     * docs/authentication.md#suspended-organizations). The reason is the operator's, never shown to the tenant.
     */
    suspendedAt: text("suspended_at"),
    suspensionReason: text("suspension_reason"),
    ...timestamps,
  },
  // The admin list pages through organizations newest first (keyset on created_at, id).
  (t) => [index("organizations_created_idx").on(t.createdAt, t.id)],
);

/** Every change of an organization's balance: grants and adjustments (admin), run charges. */
export const creditLedger = sqliteTable(
  "credit_ledger",
  {
    id: text("id").primaryKey(),
    organizationId: text("organization_id")
      .notNull()
      .references(() => organizations.id),
    kind: text("kind", { enum: ["grant", "charge"] }).notNull(),
    /** Signed change of the balance: grants positive, charges zero or negative. */
    amount: integer("amount").notNull(),
    balanceAfter: integer("balance_after").notNull(),
    runId: text("run_id"),
    note: text("note").notNull().default(""),
    createdAt: timestamps.createdAt,
  },
  (t) => [
    index("credit_ledger_org_created_idx").on(t.organizationId, t.createdAt),
    // One charge per run, whatever retries the settlement sees (a reset's run gets its own
    // charge row, `charge:<run>:<temporal run>`, unique by its id; migration 0010).
    uniqueIndex("credit_ledger_run_charge_uq").on(t.runId).where(sql`kind = 'charge' AND id = 'charge:' || run_id`),
  ],
);

/** A prompt workflow's definition (workflows.kind = 'prompt'). */
export interface PromptDefinition {
  template: string;
  /** The template's `{{variable}}` names, in order of first use. */
  variables: string[];
  /** `provider/model`, as in host/llm/models.ts. */
  model: string;
  webSearch: boolean;
  maxOutputTokens: number;
}

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
 * organization may run them); prompt workflows (kind `prompt`, ids `wf_...`) belong to one organization and start unpublished.
 */
export const workflows = sqliteTable(
  "workflows",
  {
    id: text("id").primaryKey(),
    organizationId: text("organization_id").references(() => organizations.id),
    name: text("name").notNull(),
    /**
     * The name folded for the Workflow Runs API's case-insensitive `search` (`foldForSearch`,
     * src/shared/names.ts: SQLite's lower() folds ASCII only), written with the name. NULL: not
     * folded yet (a row from before migration 0026 with a non-ASCII name, or one an older Worker
     * wrote or renamed); `foldUnfoldedNames` folds those at each catalog publish.
     */
    nameFolded: text("name_folded"),
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
    prompt: text("prompt", { mode: "json" }).$type<PromptDefinition>(),
    ...timestamps,
  },
  (t) => [
    uniqueIndex("workflows_global_name_uq").on(t.name).where(sql`organization_id IS NULL`),
    uniqueIndex("workflows_org_name_uq").on(t.organizationId, t.name),
    index("workflows_unfolded_idx").on(t.id).where(sql`name_folded IS NULL`),
  ],
);

/**
 * The names a workflow had before it was renamed (a prompt workflow's PATCH may rename it), kept by
 * the trigger `workflows_keep_former_name` (migrations 0023, 0026): a run shows its workflow's name when it
 * ran, so the Workflow Runs API's `search` matches these too.
 */
export const workflowFormerNames = sqliteTable(
  "workflow_former_names",
  {
    workflowId: text("workflow_id")
      .notNull()
      .references(() => workflows.id),
    name: text("name").notNull(),
    /** The name folded for search, as `workflows.name_folded` (the trigger copies the workflow's); NULL: not folded yet. */
    nameFolded: text("name_folded"),
  },
  (t) => [
    primaryKey({ columns: [t.workflowId, t.name] }),
    index("workflow_former_names_unfolded_idx").on(t.workflowId).where(sql`name_folded IS NULL`),
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
    /**
     * The Temporal run whose cancellation the Workflow Runs API's cancel last asked for, so that a
     * cancel by workflow moves on to runs not yet asked (a reset's new run is asked again).
     */
    cancelRequestedRunId: text("cancel_requested_run_id"),
    /**
     * A prompt run's start, kept for what comes after an edit of its workflow (NULL for code runs
     * and rows from before migration 0022): the credits its start held (`creditHoldFor`, metered
     * or not), which a reset holds again since Temporal replays the run's own input; and its
     * `webSearch` flag, which shapes the answer an Idempotency-Key replay gives.
     */
    promptHold: integer("prompt_hold"),
    promptWebSearch: integer("prompt_web_search", { mode: "boolean" }),
    input: text("input", { mode: "json" }).notNull(),
    /** NULL while open, and when the output is too large for the row (`outputInLog`). */
    output: text("output", { mode: "json" }),
    /**
     * The output is larger than MAX_ROW_OUTPUT_BYTES and only in the run's log (its RunStream's
     * `run.finished`): a D1 row holds at most 2 MB, input included (migration 0014).
     */
    outputInLog: integer("output_in_log", { mode: "boolean" }).notNull().default(false),
    /** At most MAX_ROW_ERROR_CHARS characters (the whole message is in the run's log and Temporal). */
    error: text("error"),
    /**
     * Output's structured failure of a run that did not complete (src/shared/error-details.ts),
     * its messages cut to fit the row when long (`rowErrorDetails`); NULL otherwise, and for runs
     * that ended before migration 0016 (results then answer the message alone).
     */
    errorDetails: text("error_details", { mode: "json" }).$type<ErrorDetails>(),
    /** Totals of the run's attributes (cost in USD), kept for listing and billing. */
    costTotal: real("cost_total").notNull().default(0),
    tokensInput: integer("tokens_input").notNull().default(0),
    tokensOutput: integer("tokens_output").notNull().default(0),
    tokensTotal: integer("tokens_total").notNull().default(0),
    httpRequests: integer("http_requests").notNull().default(0),
    /**
     * The log sequence number (in the run's RunStream) of the newest attribute the totals above
     * include: a projection whose answer was lost after D1 committed it is not added twice.
     */
    attributesThroughSeq: integer("attributes_through_seq").notNull().default(0),
    /**
     * Set while a running run is blocked on a signal or human input: nothing in flight (no
     * activity, timer or child workflow) and no workflow task pending. Derived by RunStream from
     * the run's history; the Workflow Runs API reports such runs as `waiting`.
     */
    waitingSince: text("waiting_since"),
    /** Names of the environment overrides the run was given (values are never stored here). */
    envNames: text("env_names", { mode: "json" }).$type<string[]>(),
    /** Credits held while the run is open (0 once settled, or for unmetered organizations). */
    creditHold: integer("credit_hold").notNull().default(0),
    /** Credits the run was charged when it ended; NULL until settled (or when unmetered). */
    creditsCharged: integer("credits_charged"),
    /**
     * The run's tokens_total when a reset took its hold (NULL if never reset): the reset's run is
     * charged only what it adds on top (migration 0010).
     */
    creditTokensBase: integer("credit_tokens_base"),
    /**
     * What a completed run's settlement left of its hold (NULL until settled; 0 for other
     * outcomes): usage reported after the settlement is charged from it (migration 0019).
     */
    creditCapLeft: integer("credit_cap_left"),
    startedAt: text("started_at"),
    completedAt: text("completed_at"),
    ...timestamps,
  },
  (t) => [
    uniqueIndex("runs_temporal_workflow_id_uq").on(t.temporalWorkflowId),
    index("runs_org_created_idx").on(t.organizationId, t.createdAt),
    // Workflow Runs API: list by status, list by workflow (and search, which resolves names to
    // workflow ids first), and the dashboard's counts by status (covered by the index).
    index("runs_org_status_created_idx").on(t.organizationId, t.status, t.createdAt),
    index("runs_org_workflow_created_idx").on(t.organizationId, t.workflowId, t.createdAt),
    index("runs_org_workflow_status_idx").on(t.organizationId, t.workflowId, t.status, t.waitingSince),
    // GET /workflow/runs?workflowType=: the run's own workflow name (prompt workflows' and
    // unpublished ones' runs too), newest first.
    index("runs_org_workflow_name_created_idx").on(t.organizationId, t.workflowName, t.createdAt),
  ],
);

/**
 * One row per attempt of each step (Temporal activity) of each Temporal run of a run row, projected
 * by the run's RunStream from the host's `step` events, so retries show while they happen. A reset
 * or a continue-as-new gives the row a new Temporal run whose activity ids start again from the
 * same numbers: `temporal_run_id` keeps the earlier run's attempts (migration 0011).
 */
export const stepRuns = sqliteTable(
  "step_runs",
  {
    id: text("id").primaryKey(),
    runId: text("run_id")
      .notNull()
      .references(() => runs.id),
    organizationId: text("organization_id").notNull(),
    /**
     * The Temporal run the attempt ran in (the step event's run id). `''` only for rows written
     * before migration 0011 whose run row had no Temporal run id then.
     */
    temporalRunId: text("temporal_run_id").notNull().default(""),
    /** Temporal's activity id (unique within the Temporal run). */
    stepId: text("step_id").notNull(),
    stepName: text("step_name"),
    /** 1-indexed. */
    attempt: integer("attempt").notNull(),
    status: text("status", { enum: ["running", "completed", "failed"] }).notNull(),
    /** NULL until the attempt has outputs, and when they are too large for the row (`outputsInLog`). */
    outputs: text("outputs", { mode: "json" }),
    /**
     * The outputs are larger than MAX_ROW_OUTPUT_BYTES and only in the run's log (the attempt's
     * `step` events), as a run's output can be (`runs.output_in_log`; migration 0017): the Workflow
     * Runs API's detail reads them from there.
     */
    outputsInLog: integer("outputs_in_log", { mode: "boolean" }).notNull().default(false),
    error: text("error"),
    ...timestamps,
  },
  (t) => [uniqueIndex("step_runs_run_temporal_run_step_attempt_uq").on(t.runId, t.temporalRunId, t.stepId, t.attempt)],
);

/**
 * Nonces of signed host requests (/internal/*) accepted within the signature window: a request
 * presented a second time is a replay and is refused. Rows past `expires_at` are deleted lazily.
 */
export const hostRequestNonces = sqliteTable("host_request_nonces", {
  nonce: text("nonce").primaryKey(),
  /** Epoch ms after which the request could no longer pass the time check anyway. */
  expiresAt: integer("expires_at").notNull(),
});

export type Run = typeof runs.$inferSelect;
export type Workflow = typeof workflows.$inferSelect;
export type ApiKey = typeof apiKeys.$inferSelect;
export type StepRun = typeof stepRuns.$inferSelect;
export type Organization = typeof organizations.$inferSelect;

/**
 * Idempotency keys (`Idempotency-Key` on the start routes): one row per organization and key for
 * 24 hours. `fingerprint` is the SHA-256 of the route and the request body; `workflow_id` is the
 * run the key started. The claim is one INSERT … ON CONFLICT, so concurrent requests with one key
 * start one run. Rows past `expires_at` may be claimed again (and are deleted lazily).
 */
export const idempotencyKeys = sqliteTable(
  "idempotency_keys",
  {
    organizationId: text("organization_id").notNull(),
    key: text("key").notNull(),
    fingerprint: text("fingerprint").notNull(),
    /** The run's Temporal workflow id (the Workflow API's `workflowId`). */
    workflowId: text("workflow_id").notNull(),
    /** The run's UUID (`runs.id`, the start's accept id): who holds the key, even with a caller-chosen workflowId. */
    runUuid: text("run_uuid").notNull(),
    /** Epoch ms after which the key is free again. */
    expiresAt: integer("expires_at").notNull(),
    createdAt: timestamps.createdAt,
  },
  (t) => [uniqueIndex("idempotency_keys_org_key_uq").on(t.organizationId, t.key), index("idempotency_keys_expires_idx").on(t.expiresAt)],
);

/** Completion webhook endpoints of an organization (admin API). */
export const webhookEndpoints = sqliteTable(
  "webhook_endpoints",
  {
    /** `whk_<hex>` */
    id: text("id").primaryKey(),
    organizationId: text("organization_id")
      .notNull()
      .references(() => organizations.id),
    url: text("url").notNull(),
    /** Event types it receives (`run.completed`, …). */
    events: text("events", { mode: "json" }).$type<string[]>().notNull(),
    /** The signing secret (`whsec_<base64>`, Standard Webhooks), encrypted: `enc1:<keyId>:<iv>:<ciphertext>` (src/shared/secret-box.ts); rows written before encryption hold the plain value until their next write. */
    secret: text("secret").notNull(),
    /**
     * The secret a rotation replaced, sealed as it was stored, kept until `previousSecretExpiresAt`
     * (ISO): deliveries meanwhile carry a signature with each, so a receiver can switch secrets
     * without refusing a message. Null when there is none, or the rotation asked for no overlap.
     */
    previousSecret: text("previous_secret"),
    previousSecretExpiresAt: text("previous_secret_expires_at"),
    deletedAt: text("deleted_at"),
    ...timestamps,
  },
  (t) => [index("webhook_endpoints_org_idx").on(t.organizationId)],
);

/** One row per delivery attempt, written by the run's RunStream (the delivery log). */
export const webhookAttempts = sqliteTable(
  "webhook_attempts",
  {
    id: text("id").primaryKey(),
    endpointId: text("endpoint_id").notNull(),
    organizationId: text("organization_id").notNull(),
    /** The `webhook-id` header: the same on every attempt of one message. */
    messageId: text("message_id").notNull(),
    eventType: text("event_type").notNull(),
    workflowId: text("workflow_id").notNull(),
    attempt: integer("attempt").notNull(),
    /** `succeeded`, `retrying` (another attempt is scheduled) or `failed` (given up). */
    status: text("status", { enum: ["succeeded", "retrying", "failed"] }).notNull(),
    responseStatus: integer("response_status"),
    error: text("error"),
    attemptedAt: text("attempted_at").notNull(),
    nextAttemptAt: text("next_attempt_at"),
  },
  (t) => [
    uniqueIndex("webhook_attempts_message_attempt_uq").on(t.endpointId, t.messageId, t.attempt),
    index("webhook_attempts_endpoint_idx").on(t.endpointId, t.attemptedAt),
  ],
);

export type WebhookEndpoint = typeof webhookEndpoints.$inferSelect;
