import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { inject } from "vitest";

export const baseUrl = () => inject("baseUrl");
export const apiKey = () => inject("apiKey");

/** A call to the stack's admin API; throws unless it succeeds, and returns the JSON body. */
export async function admin<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(new URL(path, baseUrl()), {
    method,
    headers: { authorization: `Bearer ${inject("adminKey")}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`admin ${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export interface Organization {
  id: string;
  key: string;
}

/** A new organization of its own, with an API key (and credits, when given: a metered organization). */
export async function newOrganization(
  name: string,
  options: { rateLimitPerMinute?: number; credits?: number } = {},
): Promise<Organization> {
  const org = await admin<{ id: string }>("POST", "/admin/v1/organizations", { name });
  const key = await admin<{ key: string }>("POST", `/admin/v1/organizations/${org.id}/api-keys`, {
    name: "e2e",
    ...(options.rateLimitPerMinute ? { rateLimitPerMinute: options.rateLimitPerMinute } : {}),
  });
  if (options.credits !== undefined) await admin("POST", `/admin/v1/organizations/${org.id}/credits`, { amount: options.credits });
  return { id: org.id, key: key.key };
}

export function api(path: string, init: RequestInit & { key?: string | null } = {}): Promise<Response> {
  const { key = apiKey(), headers, ...rest } = init;
  return fetch(new URL(path, baseUrl()), {
    ...rest,
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(headers as Record<string, string>) },
  });
}

export function postJson(path: string, body: unknown, init: RequestInit & { key?: string | null } = {}): Promise<Response> {
  return api(path, {
    ...init,
    method: "POST",
    headers: { "content-type": "application/json", ...(init.headers as Record<string, string>) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Polls until `check` returns a value, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined | null | false>, timeoutMs = 30_000, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Reads the stack's local D1 directly, the way an operator would with wrangler. */
export function queryD1<T>(sql: string): T[] {
  const root = resolve(import.meta.dirname, "../..");
  const res = spawnSync(
    "npx",
    ["wrangler", "d1", "execute", "DB", "--local", "--persist-to", inject("stateDir"), "--json", "--command", sql],
    {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, CI: "true" },
    },
  );
  if (res.status !== 0) throw new Error(`wrangler d1 execute failed: ${res.stderr}`);
  return (JSON.parse(res.stdout) as Array<{ results: T[] }>)[0]!.results;
}

export interface ResultPayload {
  workflowId: string;
  runId: string | null;
  status: string;
  input: unknown;
  output: unknown;
  trace: unknown;
  attributes: unknown[];
  aggregations: { cost: { total: number }; tokens: { total: number; input: number; output: number }; httpRequests: { total: number } };
  error: string | null;
}

export type { ErrorBody, OutputErrorBody } from "../support/error-bodies.ts";
