/** Shared by the webhook tests: the test receiver (a real HTTP server on 127.0.0.1) and endpoint registration. */
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import type { TestDnsRecords } from "../support/webhook-receiver.ts";
import { admin } from "./helpers.ts";

/** One request the receiver got, as its log reports it. */
export interface Received {
  headers: Record<string, string>;
  body: string;
  status: number;
}

/** The receiver's URL for `name`; `plan` lists the statuses it answers in turn (e.g. "500,500,200"). */
export const hookUrl = (name: string, plan = "") => `${env.WEBHOOK_TEST_RECEIVER}/hook/${name}${plan ? `?plan=${plan}` : ""}`;
export const received = async (name: string): Promise<Received[]> => (await fetch(`${env.WEBHOOK_TEST_RECEIVER}/log/${name}`)).json();

/** Polls `check` until it gives a value (deliveries happen in the background, with retries). */
export async function until<T>(check: () => Promise<T | null | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Registers an endpoint for the organization through the admin API (201 expected). */
export async function register(organizationId: string, url: string, events?: string[]) {
  const res = await admin("POST", `/admin/v1/organizations/${organizationId}/webhooks`, { url, ...(events ? { events } : {}) });
  expect(res.status).toBe(201);
  return (await res.json()) as { id: string; secret: string; events: string[] };
}

/** Sets what the test DNS resolver (the receiver) answers for `name` from now on. */
export async function setDns(name: string, records: TestDnsRecords): Promise<void> {
  const res = await fetch(`${env.WEBHOOK_TEST_RECEIVER}/dns/${encodeURIComponent(name)}`, { method: "PUT", body: JSON.stringify(records) });
  expect(res.status).toBe(204);
}
