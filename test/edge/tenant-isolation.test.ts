/**
 * Tenant isolation: every route that names a run answers another organization's run exactly as
 * it answers a run that does not exist (404, never 403, never data).
 */
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { call, type OutputErrorBody, seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";

const jwtFor = (organizationId: string) =>
  new SignJWT({ org_id: organizationId })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode("edge-test-jwt-secret-at-least-32-bytes-long"));

describe("tenant isolation", () => {
  let owner: Awaited<ReturnType<typeof seedOrganization>>;
  let intruder: Awaited<ReturnType<typeof seedOrganization>>;
  let workflowId: string;
  let runId: string;
  let rowId: string;
  beforeAll(async () => {
    await seedCatalog();
    owner = await seedOrganization("owner");
    intruder = await seedOrganization("intruder");
    ({ workflowId, runId } = await createRunningRun(owner.organizationId, "approval"));
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    rowId = (await env.DB.prepare("SELECT id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ id: string }>())!.id;
  });

  it("every Workflow API route that names the run answers the intruder 404 run_not_found, with no data", async () => {
    const routes: Array<[string, string, unknown?]> = [
      ["GET", `/workflow/${workflowId}/status`],
      ["GET", `/workflow/${workflowId}/result`],
      ["GET", `/workflow/${workflowId}/history`],
      ["GET", `/workflow/${workflowId}/history/stream`],
      ["GET", `/workflow/${workflowId}/runs/${runId}/history/stream`],
      ["GET", `/workflow/${workflowId}/trace-log`],
      ["GET", `/workflow/${workflowId}/runs/${runId}/trace-log`],
      ["GET", `/workflow/${workflowId}/runs/${runId}/history`],
      ["POST", `/workflow/${workflowId}/reset`, { stepName: "waitForApproval" }],
      ["POST", `/workflow/${workflowId}/runs/${runId}/reset`, { stepName: "waitForApproval" }],
      ["POST", `/workflow/${workflowId}/stream-token`],
      ["POST", `/workflow/${workflowId}/signal/approve`, { payload: { approvedBy: "x" } }],
      ["POST", `/workflow/${workflowId}/query/progress`],
      ["POST", `/workflow/${workflowId}/update/setPriority`, { payload: { priority: 1 } }],
      ["PATCH", `/workflow/${workflowId}/stop`],
      ["POST", `/workflow/${workflowId}/terminate`, {}],
      // Output's routes (issue 15)
      ["GET", `/workflow/${workflowId}/input`],
      ["GET", `/workflow/${workflowId}/runs/${runId}/status`],
      ["GET", `/workflow/${workflowId}/runs/${runId}/result`],
      ["GET", `/workflow/${workflowId}/runs/${runId}/input`],
      ["PATCH", `/workflow/${workflowId}/runs/${runId}/stop`],
      ["POST", `/workflow/${workflowId}/runs/${runId}/terminate`, {}],
      ["POST", `/workflow/${workflowId}/feedback`, { payload: { approvedBy: "x" } }],
    ];
    for (const [method, path, body] of routes) {
      const res = await call(path, {
        method,
        headers: { authorization: `Bearer ${intruder.key}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      expect(res.status, `${method} ${path}`).toBe(404);
      const text = await res.text();
      expect((JSON.parse(text) as OutputErrorBody).code, path).toBe("run_not_found");
      expect(text).not.toContain(runId);
      // The owner gets past the ownership check on the same route.
      // (A stop of the owner's ended run is a 404 too, as Output's, but not "no such run".)
      const own = await call(path, {
        method,
        headers: { authorization: `Bearer ${owner.key}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const ownText = await own.text();
      expect([401, 403, 500], `owner ${method} ${path}: ${own.status} ${ownText}`).not.toContain(own.status);
      if (own.status === 404) expect((JSON.parse(ownText) as OutputErrorBody).code, `owner ${method} ${path}`).not.toBe("run_not_found");
    }
    const recent = await (await call("/workflow/runs", { headers: { authorization: `Bearer ${intruder.key}` } })).text();
    expect(recent).not.toContain(workflowId);
  });

  it("the Workflow Runs API: detail and stream 404, cancel says not_found, lists and counts leave it out", async () => {
    const token = await jwtFor(intruder.organizationId);
    const get = (path: string) => call(path, { headers: { authorization: `Bearer ${token}` } });
    expect((await get(`/api/v1/workflow-runs/${rowId}`)).status).toBe(404);
    expect((await get(`/api/v1/workflow-runs/${rowId}/stream`)).status).toBe(404);
    const cancel = await call("/api/v1/workflow-runs/cancel", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ runIds: [rowId] }),
    });
    expect(((await cancel.json()) as { results: Array<{ status: string }> }).results[0]!.status).toBe("not_found");
    expect(await (await get("/api/v1/workflow-runs?limit=100")).text()).not.toContain(rowId);
    const wf = (await env.DB.prepare("SELECT workflow_id FROM runs WHERE id = ?").bind(rowId).first<{ workflow_id: string }>())!
      .workflow_id;
    expect(((await (await get(`/api/v1/workflow-runs/dashboard/${wf}`)).json()) as { total: number }).total).toBe(0);
  });

  it("a start under another organization's workflow id with a bogus workflow or input is answered as under a free id: no oracle of taken ids", async () => {
    const taken = `order-${crypto.randomUUID()}`;
    const start = (key: string, body: Record<string, unknown>) =>
      call("/workflow/start", {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    expect((await start(owner.key, { workflowName: "hello", input: { name: "Ada" }, workflowId: taken })).status).toBe(200);
    for (const bogus of [{ workflowName: "nope" }, { workflowName: "hello", input: { name: 42 } }]) {
      const onTaken = await start(intruder.key, { ...bogus, workflowId: taken });
      const onFree = await start(intruder.key, { ...bogus, workflowId: `order-${crypto.randomUUID()}` });
      expect([onTaken.status, ((await onTaken.json()) as OutputErrorBody).code]).toEqual([
        onFree.status,
        ((await onFree.json()) as OutputErrorBody).code,
      ]);
      expect(onTaken.status).not.toBe(409);
    }
    // Nor does an organization out of credits: its start is refused for the credits either way.
    const broke = await seedOrganization("broke");
    await env.DB.prepare("UPDATE organizations SET credit_balance = 0 WHERE id = ?").bind(broke.organizationId).run();
    const brokeOnTaken = await start(broke.key, { workflowName: "hello", input: { name: "Eve" }, workflowId: taken });
    const brokeOnFree = await start(broke.key, {
      workflowName: "hello",
      input: { name: "Eve" },
      workflowId: `order-${crypto.randomUUID()}`,
    });
    expect([brokeOnTaken.status, ((await brokeOnTaken.json()) as OutputErrorBody).code]).toEqual([
      brokeOnFree.status,
      ((await brokeOnFree.json()) as OutputErrorBody).code,
    ]);
    expect(brokeOnTaken.status).toBe(402);
    // A start that would be accepted still learns the id is taken (ids are one space): 409, nothing written.
    expect((await start(intruder.key, { workflowName: "hello", input: { name: "Eve" }, workflowId: taken })).status).toBe(409);
    const rows = await env.DB.prepare("SELECT organization_id FROM runs WHERE temporal_workflow_id = ?").bind(taken).all();
    expect(rows.results).toEqual([{ organization_id: owner.organizationId }]);
  });

  it("a stream token minted for one run opens no other run, and no other route", async () => {
    const mint = await call(`/workflow/${workflowId}/stream-token`, { method: "POST", headers: { authorization: `Bearer ${owner.key}` } });
    const { token } = (await mint.json()) as { token: string };
    const other = await createRunningRun(owner.organizationId);
    expect((await call(`/workflow/${other.workflowId}/history/stream?token=${token}`)).status).toBe(401);
    expect((await call(`/workflow/${workflowId}/status?token=${token}`)).status).toBe(401);
    expect((await call(`/workflow/${workflowId}/history/stream?token=${token}`)).status).toBe(200);
  });
});
