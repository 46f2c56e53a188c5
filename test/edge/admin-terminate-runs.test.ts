/**
 * Operators stopping a tenant's runs from the admin API: one run
 * (POST /admin/v1/organizations/:orgId/runs/:workflowId/terminate) or every open run of the
 * organization, a bounded page per call (POST /admin/v1/organizations/:orgId/terminate-runs).
 * Both go through the tenant terminate's path (the host terminates the run in Temporal, the relay's
 * end is recorded by the run's DO); the host is scripted here (edge tests have none), and test/cli
 * runs the real one. A suspended organization's own terminate is refused, so these are the only way.
 */
import { env } from "cloudflare:workers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { admin, call, type ErrorBody, errorCodeOf, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { createRunningRun, finishedEvent, push } from "./stream-helpers.ts";

/** The terminates the scripted host got: workflow id and body. */
const terminates: Array<{ workflowId: string; reason?: string; runId?: string }> = [];
/** Workflows the scripted host finds closed in Temporal already (the D1 row lags): 409 run_finished. */
const closedInTemporal = new Set<string>();
/** Workflows the scripted host cannot reach Temporal for: a 503. */
const unreachable = new Set<string>();
let restoreHost: () => void;

beforeAll(async () => {
  await seedCatalog();
  restoreHost = scriptHost(async (request, path) => {
    const match = /^\/v1\/runs\/([^/]+)\/terminate$/.exec(path);
    if (!match) throw new TypeError("connection refused");
    const workflowId = decodeURIComponent(match[1]!);
    if (HOST_PATHS.terminate(workflowId) !== path) throw new TypeError("connection refused");
    const body = (await request.json()) as { reason?: string; runId?: string };
    terminates.push({ workflowId, ...body });
    if (unreachable.has(workflowId))
      return Response.json({ error: { code: "temporal_unavailable", message: "Temporal is not answering" } }, { status: 503 });
    if (closedInTemporal.has(workflowId))
      return Response.json({ error: { code: "run_finished", message: "workflow execution already completed" } }, { status: 409 });
    const run = await env.DB.prepare("SELECT temporal_run_id AS runId FROM runs WHERE temporal_workflow_id = ?")
      .bind(workflowId)
      .first<{ runId: string }>();
    return Response.json({ status: "terminated", runId: run!.runId });
  });
});
afterAll(() => restoreHost());
afterEach(() => {
  terminates.length = 0;
  closedInTemporal.clear();
  unreachable.clear();
});

const REASON = "abuse report #7";
const RECORDED = `terminated by the operator: ${REASON}`;

const terminateOne = (orgId: string, workflowId: string, body: unknown = { reason: REASON }, key?: string) =>
  admin("POST", `/admin/v1/organizations/${orgId}/runs/${workflowId}/terminate`, body, key);
const terminateAll = (orgId: string, body: unknown = { reason: REASON }, key?: string) =>
  admin("POST", `/admin/v1/organizations/${orgId}/terminate-runs`, body, key);
const suspend = (orgId: string) => admin("POST", `/admin/v1/organizations/${orgId}/suspend`, { reason: "abuse" });
const status = async (workflowId: string) =>
  (await env.DB.prepare("SELECT status FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ status: string }>())?.status;
const tenantTerminate = (key: string, workflowId: string) =>
  call(`/workflow/${workflowId}/terminate`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ reason: "mine" }),
  });
/** The relay's end of a terminated run, as the host pushes it once Temporal has closed the run. */
const terminatedEnd = (workflowId: string, runId: string) =>
  push(workflowId, [{ ...finishedEvent(runId, "terminated"), data: { runId, status: "terminated", output: null, error: RECORDED } }]);

describe("POST /admin/v1/organizations/:orgId/runs/:workflowId/terminate", () => {
  it("terminates a running run of a suspended organization through the host, with the reason marked as the operator's; its end is recorded as a tenant terminate's", async () => {
    const org = await seedOrganization();
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    expect((await suspend(org.organizationId)).status).toBe(200);
    // The tenant itself can no longer stop it.
    const refused = await tenantTerminate(org.key, workflowId);
    expect([refused.status, errorCodeOf((await refused.json()) as ErrorBody)]).toEqual([403, "organization_suspended"]);

    const res = await terminateOne(org.organizationId, workflowId);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ terminated: true, workflowId, runId, status: "terminated", reason: RECORDED });
    expect(terminates).toEqual([{ workflowId, reason: RECORDED }]);

    // The relay brings Temporal's end: the run's DO records it (row, log, credits, webhooks) as for any terminate.
    await terminatedEnd(workflowId, runId);
    expect(await status(workflowId)).toBe("terminated");
    const ends = (await runStream(env, workflowId).events()).filter((e) => e.type === "run.finished");
    expect(ends.map((e) => (e.data as { status: string }).status)).toEqual(["terminated"]);
  });

  it("a finished run: the tenant terminate's answer (404 run_ended), from the row or from the host when the row lags; nothing else is sent", async () => {
    const org = await seedOrganization();
    const done = await createRunningRun(org.organizationId);
    await push(done.workflowId, [finishedEvent(done.runId, "completed")]);
    const tenant = await tenantTerminate(org.key, done.workflowId);
    const tenantBody = (await tenant.json()) as ErrorBody;
    expect([tenant.status, errorCodeOf(tenantBody)]).toEqual([404, "run_ended"]);

    const res = await terminateOne(org.organizationId, done.workflowId);
    expect([res.status, errorCodeOf((await res.json()) as ErrorBody)]).toEqual([tenant.status, errorCodeOf(tenantBody)]);
    expect(terminates).toEqual([]);

    const lagging = await createRunningRun(org.organizationId);
    closedInTemporal.add(lagging.workflowId);
    const late = await terminateOne(org.organizationId, lagging.workflowId);
    expect([late.status, errorCodeOf((await late.json()) as ErrorBody)]).toEqual([404, "run_ended"]);
  });

  it("bad requests: no reason or a blank one is 400; an unknown organization 404 organization_not_found; an unknown run or another organization's 404 run_not_found; none reaches the host", async () => {
    const org = await seedOrganization();
    const other = await seedOrganization();
    const { workflowId } = await createRunningRun(org.organizationId);
    const foreign = await createRunningRun(other.organizationId);
    const answers = async (res: Response) => [res.status, errorCodeOf((await res.json()) as ErrorBody)];
    expect(await answers(await terminateOne(org.organizationId, workflowId, {}))).toEqual([400, "invalid_request"]);
    expect(await answers(await terminateOne(org.organizationId, workflowId, { reason: "   " }))).toEqual([400, "invalid_request"]);
    expect(await answers(await terminateOne(org.organizationId, workflowId, { reason: "x", extra: 1 }))).toEqual([400, "invalid_request"]);
    expect(await answers(await terminateOne(org.organizationId, workflowId, "{bad"))).toEqual([400, "invalid_json"]);
    expect(await answers(await terminateOne("org_nope_unknown", workflowId))).toEqual([404, "organization_not_found"]);
    expect(await answers(await terminateOne(org.organizationId, `two_steps-${crypto.randomUUID()}`))).toEqual([404, "run_not_found"]);
    expect(await answers(await terminateOne(org.organizationId, foreign.workflowId))).toEqual([404, "run_not_found"]);
    expect(terminates).toEqual([]);
    expect(await status(foreign.workflowId)).toBe("running");
  });

  it("security: the reason, which the tenant reads, holds no control or bidi control (it would reorder what the tenant is shown): 400 naming the character, and nothing reaches the host; right-to-left text itself is kept", async () => {
    const org = await seedOrganization();
    const { workflowId } = await createRunningRun(org.organizationId);
    for (const [reason, named] of [
      ["abuse \u202Eredlof ruoy\u202C", "U+202E"], // RIGHT-TO-LEFT OVERRIDE: shows "your folder" reversed
      ["abuse \u2066x\u2069", "U+2066"],
      ["\u001b[2Jabuse", "U+001B"],
      ["abuse\nfor real", "U+000A"],
    ] as const) {
      const res = await terminateOne(org.organizationId, workflowId, { reason });
      expect(res.status).toBe(400);
      const body = (await res.json()) as ErrorBody;
      expect(errorCodeOf(body)).toBe("invalid_request");
      expect(JSON.stringify(body)).toContain(named);
      expect((await terminateAll(org.organizationId, { reason })).status).toBe(400);
    }
    expect(terminates).toEqual([]);
    const hebrew = "\u05D4\u05E4\u05E8\u05EA \u05EA\u05E0\u05D0\u05D9\u05DD (abuse)";
    const res = await terminateOne(org.organizationId, workflowId, { reason: hebrew });
    expect(res.status).toBe(200);
    expect(terminates.at(-1)?.reason).toBe(`terminated by the operator: ${hebrew}`);
  });
});

describe("POST /admin/v1/organizations/:orgId/terminate-runs", () => {
  it("terminates the organization's open runs a page at a time, oldest first; `remaining` and `next` say what is left; runs of other organizations and ended runs are left alone", async () => {
    const org = await seedOrganization();
    const other = await seedOrganization();
    const open = [];
    for (let i = 0; i < 3; i++) open.push(await createRunningRun(org.organizationId));
    const done = await createRunningRun(org.organizationId);
    await push(done.workflowId, [finishedEvent(done.runId, "completed")]);
    const foreign = await createRunningRun(other.organizationId);
    await suspend(org.organizationId);

    const first = await terminateAll(org.organizationId, { reason: REASON, limit: 2 });
    expect(first.status).toBe(200);
    const page1 = (await first.json()) as {
      reason: string;
      results: unknown[];
      summary: Record<string, number>;
      remaining: number;
      next: string;
    };
    expect(page1).toMatchObject({
      reason: RECORDED,
      results: open.slice(0, 2).map(({ workflowId, runId }) => ({ workflowId, runId, status: "terminated" })),
      summary: { terminated: 2, already_ended: 0, not_started: 0, error: 0 },
      remaining: 1,
    });
    expect(typeof page1.next).toBe("string");
    // The rows still say running (the relay has not brought the ends yet): `next` moves past them all the same.
    expect(await status(open[0]!.workflowId)).toBe("running");
    const second = (await (await terminateAll(org.organizationId, { reason: REASON, after: page1.next })).json()) as Record<
      string,
      unknown
    >;
    expect(second).toMatchObject({
      results: [{ workflowId: open[2]!.workflowId, runId: open[2]!.runId, status: "terminated" }],
      summary: { terminated: 1 },
      remaining: 0,
      next: null,
    });
    expect(terminates.map((t) => [t.workflowId, t.reason])).toEqual(open.map((r) => [r.workflowId, RECORDED]));
    expect(await status(foreign.workflowId)).toBe("running");

    // Asked again from the start (the ends not recorded yet): Temporal has them closed, so nothing more happens.
    for (const run of open) closedInTemporal.add(run.workflowId);
    const again = (await (await terminateAll(org.organizationId)).json()) as Record<string, unknown>;
    expect(again).toMatchObject({ summary: { terminated: 0, already_ended: 3 }, remaining: 0, next: null });
    for (const run of open) await terminatedEnd(run.workflowId, run.runId);
    expect(await Promise.all(open.map((r) => status(r.workflowId)))).toEqual(["terminated", "terminated", "terminated"]);
    expect(await (await terminateAll(org.organizationId)).json()).toMatchObject({ results: [], remaining: 0, next: null });
  });

  it("a run it could not terminate (the host's 503) is answered `error`, and `next` comes back to it", async () => {
    const org = await seedOrganization();
    const runs = [await createRunningRun(org.organizationId), await createRunningRun(org.organizationId)];
    unreachable.add(runs[0]!.workflowId);
    const first = (await (await terminateAll(org.organizationId)).json()) as {
      results: Array<{ status: string; code?: string }>;
      remaining: number;
      next: string;
    };
    expect(first.results.map((r) => r.status)).toEqual(["error", "terminated"]);
    expect(first.results[0]!.code).toBe("host_unavailable");
    expect(first.remaining).toBe(1);
    unreachable.clear();
    // The run after it is taken again too: Temporal has it closed already, so that changes nothing.
    closedInTemporal.add(runs[1]!.workflowId);
    const retried = (await (await terminateAll(org.organizationId, { reason: REASON, after: first.next })).json()) as Record<
      string,
      unknown
    >;
    expect(retried).toMatchObject({
      results: [
        { workflowId: runs[0]!.workflowId, status: "terminated" },
        { workflowId: runs[1]!.workflowId, status: "already_ended" },
      ],
      remaining: 0,
      next: null,
    });
  });

  it("the host unreachable: the page stops after the calls already made (six at a time), rather than wait on the host for each run", async () => {
    const org = await seedOrganization();
    const runs = [];
    for (let i = 0; i < 7; i++) runs.push(await createRunningRun(org.organizationId));
    unreachable.add(runs[0]!.workflowId);
    const page = (await (await terminateAll(org.organizationId)).json()) as { results: Array<{ status: string }>; remaining: number };
    expect(page.results.map((r) => r.status)).toEqual(["error", ...Array(5).fill("terminated")]);
    expect(terminates.map((t) => t.workflowId)).toEqual(runs.slice(0, 6).map((r) => r.workflowId));
    // The run it could not reach and the one it did not try.
    expect(page.remaining).toBe(2);
  });

  it("bad requests: no reason, a limit out of range, a cursor it did not issue are 400; an unknown organization 404", async () => {
    const org = await seedOrganization();
    const answers = async (res: Response) => [res.status, errorCodeOf((await res.json()) as ErrorBody)];
    expect(await answers(await terminateAll(org.organizationId, {}))).toEqual([400, "invalid_request"]);
    expect(await answers(await terminateAll(org.organizationId, { reason: REASON, limit: 0 }))).toEqual([400, "invalid_request"]);
    expect(await answers(await terminateAll(org.organizationId, { reason: REASON, limit: 101 }))).toEqual([400, "invalid_request"]);
    expect(await answers(await terminateAll(org.organizationId, { reason: REASON, after: "not-a-cursor" }))).toEqual([
      400,
      "invalid_request",
    ]);
    expect(await answers(await terminateAll("org_nope_unknown"))).toEqual([404, "organization_not_found"]);
    expect(terminates).toEqual([]);
  });
});

describe("only the admin token", () => {
  it("a tenant's API key, no credential or a wrong admin key is 401 on both routes, and nothing is terminated", async () => {
    const org = await seedOrganization();
    const { workflowId } = await createRunningRun(org.organizationId);
    for (const key of [org.key, "", "not-the-admin-key-but-32-characters-long"]) {
      for (const res of [
        await terminateOne(org.organizationId, workflowId, { reason: REASON }, key),
        await terminateAll(org.organizationId, { reason: REASON }, key),
      ]) {
        expect([res.status, errorCodeOf((await res.json()) as ErrorBody)]).toEqual([401, "unauthorized"]);
      }
    }
    // The tenant's own credential with the tenant's header forms too (Basic, as Output's CLI sends it).
    const basic = await call(`/admin/v1/organizations/${org.organizationId}/terminate-runs`, {
      method: "POST",
      headers: { authorization: `Basic ${org.key}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: REASON }),
    });
    expect(basic.status).toBe(401);
    expect(terminates).toEqual([]);
    expect(await status(workflowId)).toBe("running");
  });
});
