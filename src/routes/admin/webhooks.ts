/**
 * Completion webhook endpoints of an organization: create (the signing secret is shown once),
 * list, delete, rotate the secret, and the delivery log; and, across organizations, sealing the
 * secrets still stored plain (or under an older key) in place. Deliveries themselves are sent by each
 * run's RunStream (durable-objects/run-stream/webhook-outbox.ts); see docs/webhooks.md.
 */
import type { Context } from "hono";
import type { z } from "zod";
import type { App, AppEnv } from "../../app-env.ts";
import {
  deleteWebhookEndpoint,
  endpointExists,
  findWebhookEndpoint,
  insertWebhookEndpoint,
  listWebhookAttempts,
  MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION,
  listWebhookEndpoints,
  rotateWebhookSecret,
  DEFAULT_PREVIOUS_SECRET_VALID_FOR_SECONDS,
} from "../../db/webhooks.ts";
import type { WebhookEndpoint } from "../../db/schema.ts";
import { ApiError, quotedId } from "../../errors.ts";
import { readJson, readJsonOrEmpty, zodIssues } from "../../middleware/json-body/index.ts";
import { secretKeysProblem } from "../../shared/secret-box.ts";
import { generateWebhookSecret, WEBHOOK_EVENT_TYPES } from "../../webhooks/signing.ts";
import { checkWebhookUrl, DNS_RETRY_AFTER_SECONDS } from "../../webhooks/address-check.ts";
import { organizationOrThrow, pageQueryOrThrow } from "./organizations.ts";
import { SEAL_LIMIT_MAX, SEAL_LIMIT_MIN, sealSecretsPage } from "../../webhooks/secret-reseal.ts";
import {
  ADMIN_ID_PATTERN,
  DELIVERIES_PAGE_MAX,
  createWebhookBody,
  deliveriesQuery,
  rotateWebhookSecretBody,
  sealSecretsQuery,
  webhooksQuery,
} from "./schemas.ts";
import { singleValuedQuery } from "../../middleware/query/index.ts";

/** An endpoint as listings show it: never its secret. */
function endpointView(endpoint: WebhookEndpoint) {
  const previousUntil = endpoint.previousSecretExpiresAt;
  return {
    id: endpoint.id,
    organizationId: endpoint.organizationId,
    url: endpoint.url,
    events: endpoint.events,
    // Until when a rotated secret still signs beside the current one (null: only the current signs).
    previousSecretExpiresAt: endpoint.previousSecret && previousUntil && Date.parse(previousUntil) > Date.now() ? previousUntil : null,
    createdAt: endpoint.createdAt,
    updatedAt: endpoint.updatedAt,
  };
}

/**
 * A write that seals a signing secret. Sealing comes before the write, so when WEBHOOK_SECRET_KEYS
 * is missing or malformed nothing is written: a 500 with its own code (not a 503: it will not work
 * on retry until the operator sets the secret), logged for the operator.
 */
async function sealing<T>(c: Context<AppEnv>, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    const problem = secretKeysProblem(err);
    if (!problem) throw err;
    console.error(JSON.stringify({ level: "error", requestId: c.get("requestId"), code: problem.code, message: problem.message }));
    throw new ApiError(problem.code, `${problem.message} (docs/webhooks.md#secrets-at-rest); nothing was written`);
  }
}

/** What is wrong with a seal-secrets query, naming each parameter at fault. */
function sealQueryProblem(error: z.ZodError): string {
  const fields = new Set(error.issues.map((issue) => (issue.code === "unrecognized_keys" ? "unknown" : String(issue.path[0]))));
  const problems: string[] = [];
  if (fields.has("after")) problems.push("after must be an endpoint id (the previous answer's next)");
  if (fields.has("limit")) problems.push(`limit must be an integer from ${SEAL_LIMIT_MIN} to ${SEAL_LIMIT_MAX}`);
  if (fields.has("unknown") || problems.length === 0) problems.push("the only query parameters are after and limit");
  return problems.join("; ");
}

const newEndpointId = () => `whk_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;

export function registerWebhooks(app: App) {
  const base = "/admin/v1/organizations/:orgId/webhooks";

  app.post(base, async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const body = await readJson(c, createWebhookBody);
    const address = await checkWebhookUrl(body.url, c.env);
    if (address.verdict === "refused")
      throw new ApiError("webhook_url_not_allowed", `this URL cannot receive webhooks: ${address.problem}`, [
        { path: "url", message: address.problem },
      ]);
    if (address.verdict === "misconfigured") {
      console.error(
        JSON.stringify({ level: "error", message: "webhook registration refused: WEBHOOK_DNS_RESOLVER", detail: address.problem }),
      );
      throw new ApiError("webhook_dns_resolver_invalid", `${address.problem}; nothing was written`);
    }
    if (address.verdict === "unknown")
      throw new ApiError("webhook_dns_unavailable", `${address.problem}; nothing was written, try again`, undefined, {
        "retry-after": String(DNS_RETRY_AFTER_SECONDS),
      });
    const secret = generateWebhookSecret();
    const events = body.events ? [...new Set(body.events)] : [...WEBHOOK_EVENT_TYPES];
    const row = await sealing(c, () =>
      insertWebhookEndpoint(c.env.DB, c.env.WEBHOOK_SECRET_KEYS, {
        id: newEndpointId(),
        organizationId: org.id,
        url: new URL(body.url).href,
        events,
        secret,
      }),
    );
    if (!row) {
      throw new ApiError(
        "too_many_webhooks",
        `organization ${org.id} has ${MAX_WEBHOOK_ENDPOINTS_PER_ORGANIZATION} webhook endpoints, the most it may have; delete one first (nothing was written)`,
      );
    }
    // The only time the secret is shown (until it is rotated).
    return c.json({ ...endpointView(row), secret }, 201);
  });

  /** Newest first, a page at a time: `before` = the previous page's `next` (null on the last page). */
  app.get(base, async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const { limit, before } = pageQueryOrThrow(c, webhooksQuery);
    const { page, next } = await listWebhookEndpoints(c.env.DB, org.id, limit, before);
    return c.json({ webhooks: page.map(endpointView), next });
  });

  app.delete(`${base}/:webhookId`, async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const id = c.req.param("webhookId");
    const row = ADMIN_ID_PATTERN.test(id) ? await deleteWebhookEndpoint(c.env.DB, org.id, id) : null;
    if (!row) throw new ApiError("webhook_not_found", `organization ${org.id} has no webhook ${quotedId(id)}`);
    return c.json({ ...endpointView(row), deletedAt: row.deletedAt });
  });

  app.post(`${base}/:webhookId/rotate-secret`, async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const id = c.req.param("webhookId");
    const notFound = () => new ApiError("webhook_not_found", `organization ${org.id} has no webhook ${quotedId(id)}`);
    // An unknown or deleted endpoint is 404 whatever the state of WEBHOOK_SECRET_KEYS (sealing would answer 500 first).
    const current = ADMIN_ID_PATTERN.test(id) ? await findWebhookEndpoint(c.env.DB, org.id, id) : null;
    if (!current) throw notFound();
    const { previousSecretValidForSeconds = DEFAULT_PREVIOUS_SECRET_VALID_FOR_SECONDS } = await readJsonOrEmpty(c, rotateWebhookSecretBody);
    const secret = generateWebhookSecret();
    const row = await sealing(c, () =>
      rotateWebhookSecret(
        c.env.DB,
        c.env.WEBHOOK_SECRET_KEYS,
        { organizationId: org.id, id, replacing: current.secret },
        secret,
        previousSecretValidForSeconds,
      ),
    );
    if (!row) {
      if (!(await endpointExists(c.env.DB, org.id, id, "live"))) throw notFound(); // deleted meanwhile
      // Another rotation wrote first: this one's secret was never stored, and must not be handed out.
      throw new ApiError(
        "webhook_secret_conflict",
        `the secret of webhook "${id}" changed while this rotation ran (another rotation); its secret is the one that call answered, or rotate again`,
      );
    }
    // Deliveries from now on (retries included) are signed with the new secret, and with the
    // replaced one too until previousSecretExpiresAt.
    return c.json({ ...endpointView(row), secret });
  });

  // Every organization's rows, deleted endpoints' too; the secrets themselves do not change.
  app.post("/admin/v1/webhooks/seal-secrets", async (c) => {
    const query = sealSecretsQuery.safeParse(singleValuedQuery(c));
    if (!query.success) throw new ApiError("invalid_request", sealQueryProblem(query.error), zodIssues(query.error));
    const { after, limit } = query.data;
    const report = await sealing(c, () => sealSecretsPage(c.env.DB, c.env.WEBHOOK_SECRET_KEYS, after, limit));
    console.log(
      JSON.stringify({
        level: report.unreadable.length > 0 ? "warn" : "info",
        message: "webhook secrets sealed",
        requestId: c.get("requestId"),
        sealed: report.sealed,
        resealed: report.resealed,
        alreadyCurrent: report.alreadyCurrent,
        unreadable: report.unreadable,
        limit,
        next: report.next,
      }),
    );
    return c.json(report);
  });

  app.get(`${base}/:webhookId/deliveries`, async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const id = c.req.param("webhookId");
    const { limit, before } = pageQueryOrThrow(c, deliveriesQuery, DELIVERIES_PAGE_MAX);
    if (!ADMIN_ID_PATTERN.test(id) || !(await endpointExists(c.env.DB, org.id, id, "any"))) {
      throw new ApiError("webhook_not_found", `organization ${org.id} has no webhook ${quotedId(id)}`);
    }
    const { page, next } = await listWebhookAttempts(c.env.DB, org.id, id, limit, before);
    return c.json({
      deliveries: page.map((a) => ({
        webhookId: a.messageId,
        eventType: a.eventType,
        workflowId: a.workflowId,
        attempt: a.attempt,
        status: a.status,
        responseStatus: a.responseStatus,
        error: a.error,
        attemptedAt: a.attemptedAt,
        nextAttemptAt: a.nextAttemptAt,
      })),
      next,
    });
  });
}
