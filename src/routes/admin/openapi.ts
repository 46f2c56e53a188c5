/** OpenAPI description of the admin API (`/admin/v1/...`). */
import type { App } from "../../app-env.ts";
import { anyObject, documentRoute, type RouteDoc } from "../../openapi/document.ts";
import {
  createApiKeyBody,
  createOrganizationBody,
  suspendOrganizationBody,
  operatorTerminateBody,
  terminateRunsBody,
  TERMINATE_RUNS_MAX,
  createWebhookBody,
  rotateWebhookSecretBody,
  apiKeysQuery,
  promptWorkflowsQuery,
  deliveriesQuery,
  createPromptWorkflowBody,
  sealSecretsQuery,
  grantCreditsBody,
  ledgerQuery,
  organizationsQuery,
  webhooksQuery,
  updatePromptWorkflowBody,
} from "./schemas.ts";

const tag = "Admin API";
const ok = (description: string, status = 200) => ({ [status]: { description, schema: anyObject } });
const BODY_ERRORS = ["invalid_json", "invalid_request", "payload_too_large"] as const;
const SECRET_KEY_ERRORS = ["webhook_secret_keys_missing", "webhook_secret_keys_invalid"] as const;

export function documentAdminApi(app: App) {
  const doc = (d: Omit<RouteDoc, "tag" | "auth">) => documentRoute(app, { ...d, tag, auth: "admin" });
  doc({
    method: "post",
    path: "/admin/v1/organizations",
    summary: "Create an organization",
    body: createOrganizationBody,
    responses: ok("Created", 201),
    errors: [...BODY_ERRORS, "organization_exists"],
  });
  doc({
    method: "get",
    path: "/admin/v1/organizations",
    summary: "List organizations, newest first, a page at a time",
    query: organizationsQuery,
    responses: ok("Organizations and `next` (the `before` of the following page; null on the last)"),
    errors: ["invalid_request"],
  });
  doc({
    method: "get",
    path: "/admin/v1/organizations/:orgId",
    summary: "An organization with its credits and status (active or suspended, when and why)",
    responses: ok("Organization"),
    errors: ["organization_not_found"],
  });
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/suspend",
    summary: "Suspend an organization: every tenant request of it is refused",
    description:
      "While suspended, every request authenticated for the organization (API keys, the stream tokens they minted, JWTs, internal calls) is 403 `organization_suspended`; " +
      "runs already going go on and are charged as usual, and their completion webhooks are delivered (`POST …/terminate-runs` stops them). " +
      "Edge isolates cache an organization's status: the change reaches them all within `effectiveWithinMs`. " +
      "Suspending a suspended organization changes nothing (its first time and reason stay) and answers 200.",
    body: suspendOrganizationBody,
    responses: ok("The organization, `status: suspended`, and `effectiveWithinMs`"),
    errors: [...BODY_ERRORS, "organization_not_found"],
  });
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/resume",
    summary: "Resume a suspended organization: its credentials work again",
    description:
      "Within `effectiveWithinMs` (the edge's cache of an organization's status). Resuming an active organization changes nothing and answers 200.",
    responses: ok("The organization, `status: active`, and `effectiveWithinMs`"),
    errors: ["organization_not_found"],
  });
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/runs/:workflowId/terminate",
    summary: "Terminate one run of an organization, whatever its status (a suspended organization's own terminate is refused)",
    description:
      "The tenant's `POST /workflow/{id}/terminate` on the organization's behalf: the host terminates the run in Temporal and its end is recorded as every end is " +
      "(the run's row and log end `terminated`, its streams end, its credits are settled, its `run.terminated` webhooks are sent). " +
      "The reason is recorded as `terminated by the operator: <reason>`, and the tenant reads it in the run's history and error. " +
      "Another organization's run is 404 `run_not_found`; a run that has ended is 404 `run_ended`, and one whose start is still being retried 409 `run_not_started`, as for the tenant.",
    body: operatorTerminateBody,
    responses: ok("`{terminated: true, workflowId, runId, status: terminated, reason}` (the reason as recorded)"),
    errors: [...BODY_ERRORS, "organization_not_found", "run_not_found", "run_ended", "run_not_started", "host_unavailable"],
  });
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/terminate-runs",
    summary: "Terminate an organization's open runs, oldest first, a page at a time",
    description:
      `Terminates up to \`limit\` (at most ${TERMINATE_RUNS_MAX}) of the organization's open runs, each as \`…/runs/{workflowId}/terminate\` does, and answers one result per run ` +
      "(`terminated`; `already_ended`: Temporal had closed it; `not_started`: its start is still being retried; `error`, with its `code`), a `summary`, " +
      "`remaining` (open runs not terminated yet) and `next`: send it as `after` until `next` is null. `next` goes on after the runs settled and comes back to the first one that was not. " +
      "Calling again changes nothing for runs already terminated.",
    body: terminateRunsBody,
    responses: ok("`{reason, results: [{workflowId, runId, status, code?, message?}], summary, remaining, next}`"),
    errors: [...BODY_ERRORS, "organization_not_found"],
  });
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/api-keys",
    summary: "Create an API key (shown once)",
    body: createApiKeyBody,
    responses: ok("Created", 201),
    errors: [...BODY_ERRORS, "organization_not_found"],
  });
  doc({
    method: "get",
    path: "/admin/v1/organizations/:orgId/api-keys",
    summary: "List API keys (never their secrets), newest first, revoked ones too",
    description: "A page at a time: `{ apiKeys, next }`; call again with `?before=<next>` until `next` is null.",
    query: apiKeysQuery,
    responses: ok("Keys"),
    errors: ["organization_not_found", "invalid_request"],
  });
  doc({
    method: "delete",
    path: "/admin/v1/organizations/:orgId/api-keys/:keyId",
    summary: "Revoke an API key",
    responses: ok("Revoked"),
    errors: ["organization_not_found", "api_key_not_found"],
  });
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/credits",
    summary: "Grant (or remove) credits",
    description:
      "With an `Idempotency-Key` header (1-255 printable ASCII characters) the grant applies once: a retry with the same key, amount and note answers 200 with the same ledger entry and `Idempotent-Replayed: true`; the key with another amount or note is 422 `idempotency_key_reused`. Grant keys do not expire.",
    body: grantCreditsBody,
    responses: { ...ok("Granted", 201), ...ok("The grant of this Idempotency-Key, applied before") },
    errors: [
      ...BODY_ERRORS,
      "organization_not_found",
      "insufficient_balance",
      "credit_balance_limit",
      "invalid_idempotency_key",
      "idempotency_key_reused",
    ],
  });
  doc({
    method: "get",
    path: "/admin/v1/organizations/:orgId/credits",
    summary: "Balance, holds and ledger",
    query: ledgerQuery,
    responses: ok("Credits"),
    errors: ["organization_not_found", "invalid_request"],
  });
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/workflows",
    summary: "Create a prompt workflow (unpublished)",
    body: createPromptWorkflowBody,
    responses: ok("Created", 201),
    errors: [...BODY_ERRORS, "organization_not_found", "workflow_name_taken"],
  });
  doc({
    method: "get",
    path: "/admin/v1/organizations/:orgId/workflows",
    summary: "List prompt workflows, newest first, unpublished ones too",
    description: "A page at a time: `{ workflows, next }`; call again with `?before=<next>` until `next` is null.",
    query: promptWorkflowsQuery,
    responses: ok("Workflows"),
    errors: ["organization_not_found", "invalid_request"],
  });
  doc({
    method: "get",
    path: "/admin/v1/workflows/:workflowId",
    summary: "A prompt workflow",
    responses: ok("Workflow"),
    errors: ["workflow_not_found"],
  });
  doc({
    method: "patch",
    path: "/admin/v1/workflows/:workflowId",
    summary: "Change a prompt workflow",
    body: updatePromptWorkflowBody,
    responses: ok("Updated"),
    errors: [...BODY_ERRORS, "workflow_not_found", "workflow_name_taken", "workflow_edit_conflict"],
  });
  for (const action of ["publish", "unpublish"]) {
    doc({
      method: "post",
      path: `/admin/v1/workflows/:workflowId/${action}`,
      summary: `${action[0]!.toUpperCase()}${action.slice(1)} a prompt workflow`,
      responses: ok("Done"),
      errors: ["workflow_not_found", "workflow_edit_conflict"],
    });
  }
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/webhooks",
    summary: "Register a completion webhook endpoint (the whsec_ secret is shown once)",
    body: createWebhookBody,
    responses: ok("Created", 201),
    errors: [
      ...BODY_ERRORS,
      "organization_not_found",
      "webhook_url_not_allowed",
      "webhook_dns_unavailable",
      "webhook_dns_resolver_invalid",
      "too_many_webhooks",
      ...SECRET_KEY_ERRORS,
    ],
  });
  doc({
    method: "get",
    path: "/admin/v1/organizations/:orgId/webhooks",
    summary: "List webhook endpoints (never their secrets), newest first",
    description: "A page at a time: `{ webhooks, next }`; call again with `?before=<next>` until `next` is null.",
    query: webhooksQuery,
    responses: ok("Webhooks"),
    errors: ["organization_not_found", "invalid_request"],
  });
  doc({
    method: "delete",
    path: "/admin/v1/organizations/:orgId/webhooks/:webhookId",
    summary: "Delete a webhook endpoint (pending deliveries stop)",
    responses: ok("Deleted"),
    errors: ["organization_not_found", "webhook_not_found"],
  });
  doc({
    method: "post",
    path: "/admin/v1/organizations/:orgId/webhooks/:webhookId/rotate-secret",
    summary: "Rotate the signing secret (the new one is shown once); the replaced one keeps signing beside it for a while",
    description:
      "Deliveries carry a signature with the new secret and, until `previousSecretExpiresAt` (24 h unless the body says otherwise), " +
      "one with the replaced secret too (Standard Webhooks: space-separated in `webhook-signature`), so a receiver can switch without refusing a message. " +
      "A rotation within that time replaces the earlier one's overlap.",
    body: rotateWebhookSecretBody,
    responses: ok("Rotated"),
    errors: ["organization_not_found", "webhook_not_found", "webhook_secret_conflict", "invalid_request", ...SECRET_KEY_ERRORS],
  });
  doc({
    method: "post",
    path: "/admin/v1/webhooks/seal-secrets",
    summary: "Seal every webhook secret still stored plain or under an older key, the secrets unchanged",
    description:
      "Every organization's endpoints, `limit` rows a call (default 500, at most 500), written in D1 batches of 100: " +
      "`{ sealed, resealed, alreadyCurrent, unreadable, next }`; call again with `?after=<next>` until `next` is null. " +
      "A call makes at most 1 + limit D1 queries: the default fits the Workers Paid plan (1,000 per invocation), `limit=40` the Free plan (50). " +
      "A rotation's replaced secret is re-sealed too while it still signs, and dropped once its overlap has ended. " +
      "Idempotent; each row's write applies only if the row still holds what was read.",
    query: sealSecretsQuery,
    responses: ok("Counts"),
    errors: ["invalid_request", ...SECRET_KEY_ERRORS],
  });
  doc({
    method: "get",
    path: "/admin/v1/organizations/:orgId/webhooks/:webhookId/deliveries",
    summary: "Delivery attempts, newest first: status, response code, time, next attempt",
    description: "A page at a time: `{ deliveries, next }`; call again with `?before=<next>` until `next` is null.",
    query: deliveriesQuery,
    responses: ok("Deliveries"),
    errors: ["organization_not_found", "webhook_not_found", "invalid_request"],
  });
}
