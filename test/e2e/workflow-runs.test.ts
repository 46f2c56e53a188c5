/** The Workflow Runs API through the whole stack: execute (blocking and SSE), resume, cancel, list, dashboard, detail. */
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { readSse, type SseMessage } from "../support/sse.ts";
import { TEST_JWT_AUDIENCE, testJwt } from "../support/stack.ts";
import { admin, baseUrl, eventually, postJson, queryD1 } from "./helpers.ts";

let token = "";
let organizationId = "";
let apiKey = "";
const workflowIds: Record<string, string> = {};

const authed = (path: string, init: RequestInit = {}) =>
  fetch(new URL(path, baseUrl()), { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) } });

function form(fields: Record<string, unknown>): FormData {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.set(name, typeof value === "string" ? value : JSON.stringify(value));
  return body;
}

const execute = (fields: Record<string, unknown>) => authed("/api/v1/workflow-runs/execute", { method: "POST", body: form(fields) });
const executeStream = (fields: Record<string, unknown>) =>
  authed("/api/v1/workflow-runs/execute/stream", { method: "POST", body: form(fields) });

async function collect(res: Response, stopAfter?: (m: SseMessage) => boolean): Promise<SseMessage[]> {
  const messages: SseMessage[] = [];
  for await (const message of readSse(res.body!)) {
    messages.push(message);
    if (stopAfter?.(message)) break;
  }
  return messages;
}

beforeAll(async () => {
  const org = await admin<{ id: string }>("POST", "/admin/v1/organizations", { name: "workflow runs e2e" });
  organizationId = org.id;
  apiKey = (await admin<{ key: string }>("POST", `/admin/v1/organizations/${org.id}/api-keys`, { name: "e2e" })).key;
  token = await testJwt(organizationId, { subject: "e2e-user" });
  for (const row of queryD1<{ id: string; name: string }>(
    "SELECT id, name FROM workflows WHERE organization_id IS NULL AND kind = 'code'",
  )) {
    workflowIds[row.name] = row.id;
  }
});

describe("execute", () => {
  it("runs a workflow to the end; envs reach its activities and are never shown or stored in clear", async () => {
    const secret = `s3cr3t-${crypto.randomUUID()}`;
    const res = await execute({ workflowId: workflowIds.hello, inputs: { name: "Ada" }, envs: { GREETING: "Bonjour", API_TOKEN: secret } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      success: boolean;
      workflowRun: { id: string; status: string; outputs: unknown; envNames: string[]; activityRuns: Array<Record<string, unknown>> };
    };
    expect(body.success).toBe(true);
    expect(body.workflowRun.status).toBe("completed");
    expect(body.workflowRun.outputs).toEqual({ greeting: "Bonjour, Ada!" });
    expect(body.workflowRun.envNames).toEqual(["GREETING", "API_TOKEN"]);
    expect(body.workflowRun.activityRuns).toEqual([
      expect.objectContaining({ stepName: "composeGreeting", attempt: 1, status: "completed", outputs: { value: "Bonjour, Ada!" } }),
    ]);
    expect(JSON.stringify(body)).not.toContain(secret);

    const list = await (await authed("/api/v1/workflow-runs?limit=100")).text();
    expect(list).toContain(body.workflowRun.id);
    expect(list).not.toContain(secret);
    const [row] = queryD1<Record<string, unknown>>(`SELECT * FROM runs WHERE id = '${body.workflowRun.id}'`);
    expect(JSON.stringify(row)).not.toContain(secret);
    // The run's history (with payloads) has neither the overrides nor their sealed form (the host's memo is left out).
    const history = await (
      await fetch(new URL(`/workflow/${String(row!.temporal_workflow_id)}/history?includePayloads=true&pageSize=1000`, baseUrl()), {
        headers: { authorization: `Bearer ${apiKey}` },
      })
    ).text();
    expect(history).toContain("workflowExecutionStartedEventAttributes");
    expect(history).not.toContain("outriderEnvs");
    expect(history).not.toContain(secret);
  });

  it("streams activity-run events with attempts 1 and 2 for a retried step, workflow-run updates, and ends with result", async () => {
    const res = await executeStream({ workflowId: workflowIds.flaky_step, inputs: { failures: 1 } });
    expect(res.status).toBe(200);
    const messages = await collect(res);
    const events = messages.map((m) => ({ event: m.event, id: m.id, data: JSON.parse(m.data) as Record<string, any> }));
    const steps = events
      .filter((e) => e.event === "activity-run")
      .map((e) => [e.data.content.stepName, e.data.content.attempt, e.data.content.status]);
    expect(steps).toEqual([
      ["unreliableStep", 1, "running"],
      ["unreliableStep", 1, "failed"],
      ["unreliableStep", 2, "running"],
      ["unreliableStep", 2, "completed"],
    ]);
    expect(events.filter((e) => e.event === "workflow-run").map((e) => e.data.content.status)).toEqual(["running", "completed"]);
    const last = events.at(-1)!;
    expect(last.event).toBe("result");
    expect(last.data.success).toBe(true);
    expect(last.data.workflowRun.outputs).toEqual({ attempts: 2 });
    expect(last.data.workflowRun.activityRuns.map((a: { attempt: number; status: string }) => [a.attempt, a.status])).toEqual([
      [1, "failed"],
      [2, "completed"],
    ]);
    // Ids are the log's sequence numbers: increasing, so Last-Event-ID can resume. The result's is the last one's, marked `.end`.
    const ids = events.filter((e) => e.id !== undefined && e !== last).map((e) => Number(e.id));
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    expect(last.id).toBe(`${ids.at(-1)}.end`);

    // Resume from the middle: exactly the events after it, then the result again.
    const runId = last.data.workflowRun.id as string;
    const middle = events.find((e) => e.event === "activity-run" && e.data.content.attempt === 2)!;
    const resumed = await collect(await authed(`/api/v1/workflow-runs/${runId}/stream`, { headers: { "last-event-id": middle.id! } }));
    const expected = events.filter((e) => e.id !== undefined && (e === last || Number(e.id) > Number(middle.id))).map((e) => e.id);
    expect(resumed.filter((m) => m.id !== undefined).map((m) => m.id)).toEqual(expected);
    expect(resumed.at(-1)!.event).toBe("result");
    // Resuming from the result's id: the client has it all, 204 (EventSource stops reconnecting).
    expect((await authed(`/api/v1/workflow-runs/${runId}/stream`, { headers: { "last-event-id": last.id! } })).status).toBe(204);

    // The detail route shows the same attempts.
    const detail = (await (await authed(`/api/v1/workflow-runs/${runId}`)).json()) as {
      activityRuns: Array<{ attempt: number; status: string }>;
    };
    expect(detail.activityRuns.map((a) => [a.attempt, a.status])).toEqual([
      [1, "failed"],
      [2, "completed"],
    ]);
  });

  it("pings every 9 s while a run is quiet", async () => {
    const res = await executeStream({ workflowId: workflowIds.two_steps, inputs: { text: "slow and steady", pauseMs: 10_000 } });
    const started = Date.now();
    const messages = await collect(res, (m) => m.event === "ping");
    const ping = messages.at(-1)!;
    expect(ping.event).toBe("ping");
    expect(JSON.parse(ping.data)).toEqual({ content: "ping" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(8_000);
  }, 60_000);

  it("a failing workflow ends the stream with an error event", async () => {
    const messages = await collect(await executeStream({ workflowId: workflowIds.always_fails, inputs: {} }));
    const last = messages.at(-1)!;
    expect(last.event).toBe("error");
    expect(JSON.parse(last.data)).toMatchObject({ error: "workflow run failed", details: expect.stringContaining("gave up on purpose") });
  });
});

describe("JWT verified against a JWKS", () => {
  it("an RS256 token from the identity provider's JWKS works; one signed with another key does not", async () => {
    const { importJWK, generateKeyPair } = await import("jose");
    const { inject } = await import("vitest");
    const key = await importJWK(JSON.parse(inject("jwksPrivateKey")) as Record<string, string>, "RS256");
    const sign = (k: Parameters<SignJWT["sign"]>[0], audience = TEST_JWT_AUDIENCE) =>
      new SignJWT({ org_id: organizationId })
        .setProtectedHeader({ alg: "RS256", kid: "e2e-key" })
        .setAudience(audience)
        .setExpirationTime("5m")
        .sign(k);
    const ok = await fetch(new URL("/api/v1/workflow-runs", baseUrl()), { headers: { authorization: `Bearer ${await sign(key)}` } });
    expect(ok.status).toBe(200);
    // The identity provider's token for another application (another audience) is not ours.
    const elsewhere = await fetch(new URL("/api/v1/workflow-runs", baseUrl()), {
      headers: { authorization: `Bearer ${await sign(key, "another-app")}` },
    });
    expect(elsewhere.status).toBe(401);
    const other = await generateKeyPair("RS256");
    const forged = await fetch(new URL("/api/v1/workflow-runs", baseUrl()), {
      headers: { authorization: `Bearer ${await sign(other.privateKey)}` },
    });
    expect(forged.status).toBe(401);
  });
});

describe("cancel", () => {
  it("a mix of running, finished and unknown runs gets the right outcome for each", async () => {
    const finished = (
      (await (await execute({ workflowId: workflowIds.hello, inputs: { name: "Bo" } })).json()) as { workflowRun: { id: string } }
    ).workflowRun.id;
    const stream = await executeStream({ workflowId: workflowIds.approval, inputs: { request: "a new laptop" } });
    const first = (await collect(stream, (m) => m.event === "workflow-run"))[0]!;
    expect(first.event).toBe("workflow-run");
    const running = (JSON.parse(first.data) as { content: { workflowRunId: string } }).content.workflowRunId;
    const unknown = crypto.randomUUID();

    const res = await postJson("/api/v1/workflow-runs/cancel", { runIds: [running, finished, unknown], reason: "e2e" }, { key: token });
    expect(res.status).toBe(200);
    const outcome = Object.fromEntries(
      ((await res.json()) as { results: Array<{ runId: string; status: string }> }).results.map((r) => [r.runId, r.status]),
    );
    expect(outcome).toEqual({ [running]: "cancelled", [finished]: "already_completed", [unknown]: "not_found" });
    const detail = await eventually(async () => {
      const d = (await (await authed(`/api/v1/workflow-runs/${running}`)).json()) as { status: string };
      return d.status === "cancelled" ? d : null;
    });
    expect(detail.status).toBe("cancelled");
    // Cancelling it again: not eligible any more.
    const again = await postJson("/api/v1/workflow-runs/cancel", { runIds: [running] }, { key: token });
    expect(((await again.json()) as { results: Array<{ status: string }> }).results[0]!.status).toBe("not_eligible");
  });
});

describe("waiting", () => {
  it("a run blocked on a signal is `waiting` in detail, list and dashboard, and `running` again once signalled", async () => {
    const stream = await executeStream({ workflowId: workflowIds.approval, inputs: { request: "a standing desk" } });
    const first = (await collect(stream, (m) => m.event === "workflow-run"))[0]!;
    const runId = (JSON.parse(first.data) as { content: { workflowRunId: string } }).content.workflowRunId;
    await eventually(
      async () => ((await (await authed(`/api/v1/workflow-runs/${runId}`)).json()) as { status: string }).status === "waiting",
    );
    const waiting = (await (await authed(`/api/v1/workflow-runs?status=waiting&limit=100`)).json()) as {
      data: Array<{ id: string; status: string }>;
    };
    expect(waiting.data.map((r) => r.id)).toContain(runId);
    const running = (await (await authed(`/api/v1/workflow-runs?status=running&limit=100`)).json()) as { data: Array<{ id: string }> };
    expect(running.data.map((r) => r.id)).not.toContain(runId);
    const dash = (await (await authed(`/api/v1/workflow-runs/dashboard/${workflowIds.approval}`)).json()) as {
      counts: Record<string, number>;
    };
    expect(dash.counts.waiting).toBeGreaterThanOrEqual(1);

    const [row] = queryD1<{ temporal_workflow_id: string }>(`SELECT temporal_workflow_id FROM runs WHERE id = '${runId}'`);
    const signal = await postJson(
      `/workflow/${row!.temporal_workflow_id}/signal/approve`,
      { payload: { approvedBy: "Grace" } },
      { key: apiKey },
    );
    expect(signal.status).toBe(200);
    const done = await eventually(async () => {
      const d = (await (await authed(`/api/v1/workflow-runs/${runId}`)).json()) as { status: string };
      return d.status === "completed" ? d : null;
    });
    expect(done.status).toBe("completed");
  });
});

describe("list and dashboard", () => {
  it("agree with each other for every status", async () => {
    const helloId = workflowIds.hello!;
    const dash = (await (await authed(`/api/v1/workflow-runs/dashboard/${helloId}`)).json()) as {
      total: number;
      counts: Record<string, number>;
    };
    expect(dash.total).toBeGreaterThanOrEqual(2);
    let sum = 0;
    for (const [status, n] of Object.entries(dash.counts)) {
      const listed = (await (await authed(`/api/v1/workflow-runs?workflowId=${helloId}&status=${status}`)).json()) as {
        pagination: { total: number };
      };
      expect(listed.pagination.total, status).toBe(n);
      sum += n;
    }
    const all = (await (await authed(`/api/v1/workflow-runs?workflowId=${helloId}`)).json()) as { pagination: { total: number } };
    expect(all.pagination.total).toBe(sum);
    expect(sum).toBe(dash.total);
  });
});
