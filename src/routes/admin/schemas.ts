/** Request bodies of the admin API. */
import { z } from "zod";
import { nameSchema, textSchema } from "../../shared/names.ts";
import { queryInt } from "../../shared/query-int.ts";
import { EVERY_SCOPE, KEY_SCOPES, KEY_SCOPE_MEANINGS } from "../../middleware/key-scope/index.ts";
import { SEAL_LIMIT_DEFAULT, SEAL_LIMIT_MAX, SEAL_LIMIT_MIN } from "../../webhooks/secret-reseal.ts";
import { DEFAULT_PREVIOUS_SECRET_VALID_FOR_SECONDS, MAX_PREVIOUS_SECRET_VALID_FOR_SECONDS } from "../../db/webhooks.ts";

/** `provider/model`, with the providers host/llm/models.ts knows. */
export const modelId = z
  .string()
  .regex(
    /^(openai|anthropic|compatible|local)\/[A-Za-z0-9._:-]{1,100}$/,
    "a model id like openai/gpt-4o-mini (providers: openai, anthropic, compatible, local)",
  );

/**
 * Operators' reasons: one line of free text (src/shared/names.ts textSchema: no control or bidi
 * control character, so that printed by `npm run admin`, or shown to the tenant, it neither
 * drives the terminal nor reorders what is read; something visible). Names (organizations, API
 * keys, prompt workflows) follow the stricter rule of nameSchema: NFC, no invisible characters.
 */
const reasonText = (max: number) => textSchema(max, { required: true });

export const createOrganizationBody = z
  .object({
    name: nameSchema(200),
    id: z
      .string()
      .regex(/^org_[a-z0-9_]{3,40}$/, "org_ followed by 3-40 lower-case letters, digits or _")
      .optional(),
  })
  .strict();

/** POST …/organizations/:orgId/suspend: why, in the operator's words (shown by the admin API only, never to the tenant). */
export const suspendOrganizationBody = z
  .object({
    reason: reasonText(500).describe(
      "Why the organization is suspended (abuse, an unpaid bill, an incident): for operators, never shown to the tenant",
    ),
  })
  .strict();

export const createApiKeyBody = z
  .object({
    name: nameSchema(100),
    rateLimitPerMinute: z.number().int().min(1).max(1_000_000).optional().describe("Requests per minute; default RATE_LIMIT_PER_MINUTE"),
    scopes: z
      .array(z.enum([EVERY_SCOPE, ...KEY_SCOPES]))
      .min(1)
      .max(KEY_SCOPES.length + 1)
      .optional()
      .describe(
        `What the key may do; default ["*"], every scope. ${KEY_SCOPES.map((s) => `\`${s}\`: ${KEY_SCOPE_MEANINGS[s]}`).join("; ")} (docs/authentication.md)`,
      ),
  })
  .strict();

export const grantCreditsBody = z
  .object({
    amount: z
      .number()
      .int()
      .min(-1_000_000_000_000)
      .max(1_000_000_000_000)
      .refine((n) => n !== 0, "must not be 0")
      .describe("Credits to add (negative to remove); 1 credit = 1 token"),
    note: z.string().max(500).default(""),
    allowDebt: z
      .boolean()
      .default(false)
      .describe("Let a removal take the balance below what is available (into debt); otherwise it is 409 insufficient_balance"),
  })
  .strict();

/** The longest template (UTF-16 units, as zod counts). */
export const MAX_TEMPLATE_CHARS = 100_000;

const promptFields = {
  // A name like an organization's: it is printed by `npm run admin` and, as the runs' workflow
  // name, by whatever lists a tenant's runs; unique in its organization once in NFC.
  name: nameSchema(100),
  description: textSchema(2000, { multiline: true }),
  template: z.string().min(1).max(MAX_TEMPLATE_CHARS).describe("Prompt text with {{variable}} placeholders"),
  model: modelId,
  webSearch: z.boolean(),
  maxOutputTokens: z.number().int().min(16).max(32_000),
};

export const DEFAULT_MAX_OUTPUT_TOKENS = 1024;

export const createPromptWorkflowBody = z
  .object({
    ...promptFields,
    description: promptFields.description.default(""),
    webSearch: promptFields.webSearch.default(false),
    maxOutputTokens: promptFields.maxOutputTokens.default(DEFAULT_MAX_OUTPUT_TOKENS),
  })
  .strict();

export const updatePromptWorkflowBody = z
  .object(promptFields)
  .partial()
  .strict()
  .refine((body) => Object.keys(body).length > 0, "send at least one field to change");

/** A page cursor as a query parameter: the previous answer's `next` (decoded by src/db/page-cursor.ts). */
const pageCursorParam = z
  .string()
  .max(1024)
  .regex(/^[A-Za-z0-9_-]+$/, "the previous answer's next")
  .optional();

export const ledgerQuery = z
  .object({
    limit: queryInt(1, 500).default(50),
    before: pageCursorParam.describe(
      "Go on with the entries older than this (the previous answer's `next`); omit to start from the newest",
    ),
  })
  .strict();

/** Page sizes of the admin lists that page by `limit` and `before` (organizations, API keys, prompt workflows, webhook endpoints). */
export const ADMIN_PAGE_DEFAULT = 100;
export const ADMIN_PAGE_MAX = 500;

/** `?limit&before` of a newest-first admin list of `what`. */
const adminPageQuery = (what: string, max = ADMIN_PAGE_MAX, fallback = ADMIN_PAGE_DEFAULT) =>
  z
    .object({
      limit: queryInt(1, max).default(fallback),
      before: pageCursorParam.describe(`Go on with the ${what} older than the previous page (its \`next\`); omit to start from the newest`),
    })
    .strict();

export const organizationsQuery = adminPageQuery("organizations");
export const apiKeysQuery = adminPageQuery("API keys");
export const webhooksQuery = adminPageQuery("webhook endpoints");
export const promptWorkflowsQuery = adminPageQuery("prompt workflows");

/** Ids in admin paths: anything else cannot exist, so it is a 404 without a query. */
export const ADMIN_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** POST …/webhooks/:id/rotate-secret: an empty body takes the default overlap. */
export const rotateWebhookSecretBody = z
  .object({
    previousSecretValidForSeconds: z
      .number()
      .int()
      .min(0)
      .max(MAX_PREVIOUS_SECRET_VALID_FOR_SECONDS)
      .optional()
      .describe(
        `How long the replaced secret keeps signing beside the new one (each delivery then carries both signatures), in seconds: 0 to ${MAX_PREVIOUS_SECRET_VALID_FOR_SECONDS}, default ${DEFAULT_PREVIOUS_SECRET_VALID_FOR_SECONDS} (24 h); 0 stops it at once`,
      ),
  })
  .strict();

export const createWebhookBody = z
  .object({
    url: z
      .string()
      .min(1)
      .max(2048)
      .describe("https URL that receives the deliveries (http://127.0.0.1 only where WEBHOOK_ALLOW_LOOPBACK_HTTP=1)"),
    events: z
      .array(z.enum(["run.completed", "run.failed", "run.cancelled", "run.terminated", "run.timed_out"]))
      .min(1)
      .max(5)
      .optional()
      .describe("Event types to send; default all five"),
  })
  .strict();

export const DELIVERIES_PAGE_MAX = 200;
export const deliveriesQuery = adminPageQuery("delivery attempts", DELIVERIES_PAGE_MAX, 50);

export const sealSecretsQuery = z
  .object({
    after: z
      .string()
      .regex(ADMIN_ID_PATTERN, "an endpoint id: the previous answer's next")
      .optional()
      .describe("Go on after this endpoint id (the previous answer's `next`); omit to start from the first"),
    limit: queryInt(SEAL_LIMIT_MIN, SEAL_LIMIT_MAX)
      .default(SEAL_LIMIT_DEFAULT)
      .describe(
        "Rows this call reads and may write; it makes at most 1 + limit D1 queries. " +
          "The default fits the Workers Paid plan (1,000 queries per invocation); 40 fits the Free plan (50)",
      ),
  })
  .strict();

/**
 * Why an operator terminates a tenant's runs. Recorded in each run's history as Temporal's
 * terminate reason, behind OPERATOR_TERMINATE_PREFIX: unlike a suspension's reason, the tenant
 * reads it (the run's history, its error, webhooks), so it is written for the tenant.
 */
const operatorTerminateReason = reasonText(500).describe(
  "Why the run is terminated. Recorded in the run's history, behind `terminated by the operator: `, where the tenant reads it",
);

/** POST …/organizations/:orgId/runs/:workflowId/terminate. */
export const operatorTerminateBody = z.object({ reason: operatorTerminateReason }).strict();

/**
 * The most open runs one POST …/terminate-runs terminates: each is one call to the host, six at a
 * time (src/routes/admin/runs.ts), so 100 is 17 rounds of calls, seconds while the host answers,
 * and well within the subrequests of a Worker invocation (1,000 on the Paid plan).
 */
export const TERMINATE_RUNS_MAX = 100;

/** POST …/organizations/:orgId/terminate-runs. */
export const terminateRunsBody = z
  .object({
    reason: operatorTerminateReason,
    limit: z
      .number()
      .int()
      .min(1)
      .max(TERMINATE_RUNS_MAX)
      .default(TERMINATE_RUNS_MAX)
      .describe(`The most open runs this call terminates: 1 to ${TERMINATE_RUNS_MAX}, default ${TERMINATE_RUNS_MAX}`),
    after: z
      .string()
      .min(1)
      .max(200)
      .optional()
      .describe("Go on from the previous answer's `next`; omit to start from the organization's oldest open run"),
  })
  .strict();
