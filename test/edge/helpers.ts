/** Helpers for edge tests: seed tenants and keys in local D1, and call the Worker. */
import { env, exports } from "cloudflare:workers";
import { catalogEntries } from "../../host/catalog.ts";
import { upsertCodeCatalog } from "../../src/db/workflows.ts";
import { generateApiKey, sha256Hex } from "../../src/shared/api-keys.ts";
import type { RunEvent } from "../../src/shared/run-event-schema.ts";
import { signRequest } from "../../src/shared/signing.ts";

export const TEST_HOST_SECRET = "edge-test-host-shared-secret-long-enough-for-hmac";
export const TEST_ADMIN_KEY = "edge-test-admin-key-of-32-characters";

/** A call to the admin API with the test admin key. */
export function admin(method: string, path: string, body?: unknown, key = TEST_ADMIN_KEY): Promise<Response> {
  return call(path, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

export async function seedOrganization(name = "Test org"): Promise<{ organizationId: string; key: string; keyId: string }> {
  const organizationId = `org_${crypto.randomUUID().slice(0, 8)}`;
  await env.DB.prepare("INSERT INTO organizations (id, name) VALUES (?, ?)").bind(organizationId, name).run();
  const { key, keyId } = await createKey(organizationId);
  return { organizationId, key, keyId };
}

/**
 * Every item of a paged admin list, read `limit` at a time by following `next` (at most 100 pages),
 * with the pages themselves.
 */
export async function readAllPages<T>(
  path: string,
  field: string,
  limit: number,
): Promise<{ items: T[]; pages: Array<{ items: T[]; next: string | null }> }> {
  const pages: Array<{ items: T[]; next: string | null }> = [];
  let before: string | null = null;
  do {
    const res = await admin("GET", `${path}?limit=${limit}${before ? `&before=${before}` : ""}`);
    if (res.status !== 200) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    const body = (await res.json()) as Record<string, unknown>;
    const page = { items: body[field] as T[], next: body.next as string | null };
    pages.push(page);
    before = page.next;
  } while (before && pages.length < 100);
  return { items: pages.flatMap((p) => p.items), pages };
}

/** An organization whose runs are metered, with `balance` credits added by the admin API. */
export async function meteredOrg(balance: number) {
  const org = await seedOrganization();
  await admin("POST", `/admin/v1/organizations/${org.organizationId}/credits`, { amount: balance, note: "test" });
  return org;
}

/** An organization's credit balance (null: unmetered) and what its running runs hold. */
export const orgRow = (id: string) =>
  env.DB.prepare("SELECT credit_balance AS balance, credits_reserved AS reserved FROM organizations WHERE id = ?")
    .bind(id)
    .first<{ balance: number | null; reserved: number }>();

export async function createKey(organizationId: string): Promise<{ key: string; keyId: string }> {
  const k = generateApiKey();
  await env.DB.prepare("INSERT INTO api_keys (id, organization_id, prefix, secret_sha256, name) VALUES (?, ?, ?, ?, 'test')")
    .bind(k.id, organizationId, k.prefix, await sha256Hex(k.secret))
    .run();
  return { key: k.key, keyId: k.id };
}

/**
 * A prompt workflow of the organization, created through the admin API (template
 * "Tell {{audience}} about {{topic}}.", model local/writer, 100 output tokens, unless `fields` say
 * otherwise) and published unless `publish` is false; its id.
 */
export async function createPromptWorkflow(organizationId: string, fields: Record<string, unknown> = {}, publish = true): Promise<string> {
  const res = await admin("POST", `/admin/v1/organizations/${organizationId}/workflows`, {
    name: `wf ${crypto.randomUUID()}`,
    template: "Tell {{audience}} about {{topic}}.",
    model: "local/writer",
    maxOutputTokens: 100,
    ...fields,
  });
  if (res.status !== 201) throw new Error(`creating a prompt workflow: ${res.status} ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  if (publish) {
    const published = await admin("POST", `/admin/v1/workflows/${id}/publish`);
    if (!published.ok) throw new Error(`publishing a prompt workflow: ${published.status}`);
  }
  return id;
}

/** The real catalog the host publishes, written the way the internal route writes it. */
export async function seedCatalog(): Promise<void> {
  await upsertCodeCatalog(env.DB, catalogEntries());
}

export function call(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(new URL(path, "http://edge.test"), init));
}

/** A browser's CORS preflight of `path` from https://app.example (a configured origin), for `method` with `requestHeaders`. */
export function preflight(path: string, method: string, requestHeaders: string): Promise<Response> {
  return call(path, {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": method, "access-control-request-headers": requestHeaders },
  });
}

export function postJson(path: string, body: unknown, key?: string, headers: Record<string, string> = {}): Promise<Response> {
  return call(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

export async function signedPost(path: string, body: unknown, secret = TEST_HOST_SECRET, now = Date.now()): Promise<Response> {
  const text = JSON.stringify(body);
  const headers = await signRequest(secret, "POST", path, text, now);
  return call(path, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: text });
}

export type { ErrorBody, OutputErrorBody } from "../support/error-bodies.ts";
export { errorCodeOf } from "../support/error-bodies.ts";

/** The `llm:usage` attribute a step reports for `tokens` tokens: what a run is charged for. */
/**
 * An `attribute` event as the host pushes it: the `n`th attribute that attempt `attempt` of the
 * step `activityId` (named `stepName`, when given) recorded.
 */
export const attributeEvent = (
  runId: string,
  step: { activityId: string; attempt: number; stepName?: string },
  attribute: Record<string, unknown>,
  { n = 1, at = new Date().toISOString() }: { n?: number; at?: string } = {},
): RunEvent =>
  ({
    sourceKey: `attribute:${runId}:${step.activityId}:${step.attempt}:${n}`,
    type: "attribute",
    at,
    data: { runId, ...step, attribute },
  }) as RunEvent;

export const llmUsageEvent = (runId: string, tokens: number, at: string): RunEvent =>
  attributeEvent(
    runId,
    { activityId: "a", attempt: 1 },
    {
      type: "llm:usage",
      modelId: "local/writer",
      total: 0,
      tokensUsed: tokens,
      usage: [
        { type: "input", ppm: 0, amount: tokens, total: 0 },
        { type: "output", ppm: 0, amount: 0, total: 0 },
      ],
    },
    { at },
  );

/**
 * Answers this isolate's calls to the host (`env.HOST_URL`; the DOs under test run in this
 * isolate too) with `answer`, given the request and its path; every other fetch goes out as usual.
 * The edge layer has no host (HOST_URL is a closed port): this scripts the host's side of one
 * exchange, and test/e2e runs the real host. Returns the undo.
 */
export function scriptHost(answer: (request: Request, path: string) => Response | Promise<Response>): () => void {
  const realFetch = globalThis.fetch;
  const hostOrigin = new URL(env.HOST_URL).origin;
  globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    return url.origin === hostOrigin ? answer(request, url.pathname) : realFetch(request);
  };
  return () => {
    globalThis.fetch = realFetch;
  };
}

/** A scripted host's answer to a start: the run is named after its accept id (a UUID, as Temporal's run ids are). */
export async function scriptedStart(request: Request): Promise<{ workflowId: string; runId: string }> {
  const { workflowId, acceptId } = (await request.json()) as { workflowId: string; acceptId: string };
  return { workflowId, runId: acceptId };
}
