/** Shared by the webhook tests: the test receiver (a real HTTP server on 127.0.0.1) and endpoint registration. */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { EventLog } from "../../durable-objects/run-stream/event-log.ts";
import { Meta } from "../../durable-objects/run-stream/meta.ts";
import { createSchema } from "../../durable-objects/run-stream/storage.ts";
import { WebhookOutbox } from "../../durable-objects/run-stream/webhook-outbox.ts";
import { runStream } from "../../src/run-stream-client.ts";
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

/**
 * A run's DO with one message for `endpointId` in its outbox. `work` then works that outbox with
 * the bindings given (this DO has no run of its own, so its alarm leaves the outbox to the test).
 */
export async function queuedMessage(organizationId: string, endpointId: string, messageId: string) {
  const workflowId = `queued-${crypto.randomUUID()}`;
  const body = JSON.stringify({ type: "run.completed", timestamp: new Date().toISOString(), data: { workflowId } });
  await runInDurableObject(runStream(env, workflowId), async (_instance, state) => {
    createSchema(state.storage.sql); // a new DO makes its schema on first use
    state.storage.sql.exec(
      `INSERT INTO webhook_outbox (delivery_id, message_id, endpoint_id, organization_id, event_type, workflow_id, body, next_attempt_at, state)
       VALUES (?, ?, ?, ?, 'run.completed', ?, ?, 0, 'pending')`,
      `${messageId}:${endpointId}`,
      messageId,
      endpointId,
      organizationId,
      workflowId,
      body,
    );
  });
  return {
    workflowId,
    work: (bindings: Partial<Env>) =>
      runInDurableObject(runStream(env, workflowId), async (_instance, state) => {
        state.storage.sql.exec("UPDATE webhook_outbox SET next_attempt_at = 0 WHERE state = 'pending'");
        const outbox = new WebhookOutbox({
          sql: state.storage.sql,
          storage: state.storage,
          env: { ...env, ...bindings } as Env,
          // An empty log and meta: no run has ended, so only the queued message is worked.
          log: new EventLog(state.storage.sql),
          meta: new Meta(state.storage.sql, []),
          endedRun: () => null,
        });
        await outbox.work(workflowId);
        return outbox.rows();
      }),
  };
}
