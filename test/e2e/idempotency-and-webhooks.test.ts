/**
 * Idempotency-Key and completion webhooks through the whole stack (wrangler dev, real Temporal,
 * the host): 20 concurrent starts with one key make one run and one credit hold; replays return
 * the first run (and its result once it ended) on every start route; a run's end reaches the
 * organization's endpoint, signed (checked with the `standardwebhooks` package).
 */
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readSse } from "../support/sse.ts";
import { testJwt } from "../support/stack.ts";
import { startWebhookReceiver, type ReceivedWebhook } from "../support/webhook-receiver.ts";
import { admin, api, eventually, newOrganization, type Organization, postJson, queryD1, type OutputErrorBody } from "./helpers.ts";

type Org = Organization;
const newOrg = (credits?: number) => newOrganization("idempotency e2e", { rateLimitPerMinute: 10_000, credits });

const withKey = (org: Org, idempotencyKey: string) => ({ key: org.key, headers: { "idempotency-key": idempotencyKey } });
const count = (sql: string) => queryD1<{ n: number }>(sql)[0]!.n;

let receiver: Awaited<ReturnType<typeof startWebhookReceiver>>;
beforeAll(async () => {
  receiver = await startWebhookReceiver();
});
afterAll(async () => {
  await receiver.close();
});

describe("Idempotency-Key through the stack", () => {
  it("20 concurrent /workflow/start with one key start exactly one run, hold credits once, and later calls replay it", async () => {
    const org = await newOrg(1_000_000);
    const key = `e2e-${crypto.randomUUID()}`;
    const body = { workflowName: "hello", input: { name: "Ada" } };
    const responses = await Promise.all(Array.from({ length: 20 }, () => postJson("/workflow/start", body, withKey(org, key))));
    const outcomes = await Promise.all(
      responses.map(async (res) => ({
        status: res.status,
        replayed: res.headers.get("idempotent-replayed"),
        body: (await res.json()) as Record<string, any>,
      })),
    );
    const ok = outcomes.filter((o) => o.status === 200);
    const conflicts = outcomes.filter((o) => o.status !== 200);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(new Set(ok.map((o) => o.body.workflowId)).size).toBe(1);
    expect(ok.filter((o) => o.replayed !== "true")).toHaveLength(1);
    for (const c of conflicts) {
      expect(c.status).toBe(409);
      expect((c.body as OutputErrorBody).code).toBe("idempotency_key_in_use");
    }
    const workflowId = ok[0]!.body.workflowId as string;
    const runId = ok.find((o) => o.replayed !== "true")!.body.runId as string;

    // Later, the same request again: the same run, marked replayed (once run.started is in D1, with its runId).
    const again = await eventually(async () => {
      const res = await postJson("/workflow/start", body, withKey(org, key));
      const json = (await res.json()) as Record<string, unknown>;
      return res.status === 200 && json.runId ? { res, json } : null;
    });
    expect(again.res.headers.get("idempotent-replayed")).toBe("true");
    expect(again.json).toMatchObject({ workflowId, runId });

    expect(count(`SELECT COUNT(*) AS n FROM runs WHERE organization_id = '${org.id}'`)).toBe(1);
    await eventually(
      async () => count(`SELECT COUNT(*) AS n FROM runs WHERE organization_id = '${org.id}' AND status = 'completed'`) === 1,
    );
    // One hold, settled once: one charge in the ledger, nothing left reserved.
    await eventually(
      async () => count(`SELECT COUNT(*) AS n FROM credit_ledger WHERE organization_id = '${org.id}' AND kind = 'charge'`) === 1,
    );
    expect(
      queryD1<{ credits_reserved: number }>(`SELECT credits_reserved FROM organizations WHERE id = '${org.id}'`)[0]!.credits_reserved,
    ).toBe(0);

    // Same key, another body: 422. Same key in another organization: a new run.
    const reused = await postJson("/workflow/start", { workflowName: "hello", input: { name: "Bob" } }, withKey(org, key));
    expect(reused.status).toBe(422);
    expect(((await reused.json()) as OutputErrorBody).code).toBe("idempotency_key_reused");
    const otherOrg = await newOrg();
    const other = await postJson("/workflow/start", body, withKey(otherOrg, key));
    expect(other.status).toBe(200);
    expect(other.headers.get("idempotent-replayed")).toBeNull();
    expect(((await other.json()) as { workflowId: string }).workflowId).not.toBe(workflowId);
  });

  it("/workflow/run replayed after the run ended returns its result; the same key on another route is 422", async () => {
    const org = await newOrg();
    const key = `e2e-${crypto.randomUUID()}`;
    const body = { workflowName: "hello", input: { name: "Grace" } };
    const first = await postJson("/workflow/run", body, withKey(org, key));
    expect(first.status).toBe(200);
    const result = (await first.json()) as Record<string, any>;
    expect(result).toMatchObject({ status: "completed", output: { greeting: "Hello, Grace!" } });
    const replay = await postJson("/workflow/run", body, withKey(org, key));
    expect(replay.status).toBe(200);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(await replay.json()).toMatchObject({
      workflowId: result.workflowId,
      runId: result.runId,
      status: "completed",
      output: { greeting: "Hello, Grace!" },
    });
    expect(count(`SELECT COUNT(*) AS n FROM runs WHERE organization_id = '${org.id}'`)).toBe(1);
    const otherRoute = await postJson("/workflow/start", body, withKey(org, key));
    expect(otherRoute.status).toBe(422);
  });

  it("/api/v1/run/{id} and its stream, and the Workflow Runs API execute, replay their first run", async () => {
    const org = await newOrg();
    const wf = await admin<{ id: string }>("POST", `/admin/v1/organizations/${org.id}/workflows`, {
      name: `idem ${crypto.randomUUID().slice(0, 8)}`,
      template: "Write a short note about {{topic}}.",
      model: "local/writer",
      maxOutputTokens: 64,
    });
    await admin("POST", `/admin/v1/workflows/${wf.id}/publish`);
    const key = `e2e-${crypto.randomUUID()}`;
    const first = await postJson(`/api/v1/run/${wf.id}`, { topic: "retries" }, withKey(org, key));
    expect(first.status).toBe(200);
    const text = ((await first.json()) as { result: string }).result;
    const replay = await postJson(`/api/v1/run/${wf.id}`, { topic: "retries" }, withKey(org, key));
    expect(replay.status).toBe(200);
    expect(replay.headers.get("idempotent-replayed")).toBe("true");
    expect(replay.headers.get("x-run-id")).toBe(first.headers.get("x-run-id"));
    expect(((await replay.json()) as { result: string }).result).toBe(text);

    const streamKey = `e2e-${crypto.randomUUID()}`;
    const streamed = async () => {
      const res = await postJson(`/api/v1/run/${wf.id}/stream`, { topic: "streams" }, withKey(org, streamKey));
      expect(res.status).toBe(200);
      const events: string[] = [];
      let result: unknown;
      for await (const m of readSse(res.body!)) {
        events.push(m.event);
        if (m.event === "result") result = JSON.parse(m.data);
        if (m.event === "result" || m.event === "error") break;
      }
      return { runId: res.headers.get("x-run-id"), replayed: res.headers.get("idempotent-replayed"), result };
    };
    const s1 = await streamed();
    const s2 = await streamed();
    expect(s2.runId).toBe(s1.runId);
    expect(s2.replayed).toBe("true");
    expect(s2.result).toEqual(s1.result);

    const token = await testJwt(org.id, { subject: "e2e", expiresIn: "10m" });
    const hello = queryD1<{ id: string }>("SELECT id FROM workflows WHERE organization_id IS NULL AND name = 'hello'")[0]!.id;
    // Each FormData gets its own multipart boundary: the fingerprint reads the fields, not the bytes.
    const execute = () => {
      const form = new FormData();
      form.set("workflowId", hello);
      form.set("inputs", JSON.stringify({ name: "Lin" }));
      return api("/api/v1/workflow-runs/execute", {
        method: "POST",
        key: token,
        headers: { "idempotency-key": `e2e-exec-${key}` },
        body: form,
      });
    };
    const e1 = await execute();
    expect(e1.status).toBe(200);
    const r1 = (await e1.json()) as { workflowRun: { id: string } };
    const e2 = await execute();
    expect(e2.status).toBe(200);
    expect(e2.headers.get("idempotent-replayed")).toBe("true");
    expect(((await e2.json()) as { workflowRun: { id: string } }).workflowRun.id).toBe(r1.workflowRun.id);
    expect(count(`SELECT COUNT(*) AS n FROM runs WHERE organization_id = '${org.id}'`)).toBe(3);
  });
});

describe("completion webhooks through the stack", () => {
  it("a finished run reaches its organization's endpoint (signed), and never another organization's", async () => {
    const org = await newOrg();
    const bystander = await newOrg();
    const name = `e2e-${crypto.randomUUID()}`;
    const otherName = `e2e-other-${crypto.randomUUID()}`;
    const endpoint = await admin<{ id: string; secret: string }>("POST", `/admin/v1/organizations/${org.id}/webhooks`, {
      url: `${receiver.url}/hook/${name}?plan=500,200`,
    });
    await admin("POST", `/admin/v1/organizations/${bystander.id}/webhooks`, { url: `${receiver.url}/hook/${otherName}` });
    const run = await postJson("/workflow/run", { workflowName: "hello", input: { name: "Hook" } }, { key: org.key });
    const result = (await run.json()) as { workflowId: string; runId: string };
    const log = (n: string) => fetch(`${receiver.url}/log/${n}`).then((r) => r.json() as Promise<ReceivedWebhook[]>);
    const got = await eventually(async () => {
      const r = await log(name);
      return r.length >= 2 ? r : null;
    });
    expect(got[0]!.headers["webhook-id"]).toBe(got[1]!.headers["webhook-id"]);
    const payload = new Webhook(endpoint.secret).verify(got[1]!.body, got[1]!.headers) as { type: string; data: Record<string, unknown> };
    expect(payload.type).toBe("run.completed");
    expect(payload.data).toMatchObject({
      workflowId: result.workflowId,
      runId: result.runId,
      workflowName: "hello",
      status: "completed",
      output: { greeting: "Hello, Hook!" },
    });
    const deliveries = await admin<{ deliveries: Array<{ status: string; responseStatus: number }> }>(
      "GET",
      `/admin/v1/organizations/${org.id}/webhooks/${endpoint.id}/deliveries`,
    );
    expect(deliveries.deliveries.map((d) => [d.status, d.responseStatus])).toEqual([
      ["succeeded", 200],
      ["retrying", 500],
    ]);
    expect(await log(otherName)).toEqual([]);
  });
});
