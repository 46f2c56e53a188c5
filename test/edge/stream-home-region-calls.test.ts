/**
 * The streaming starts, the Workflow Runs stream, the reads by workflow id, the trace log and the
 * run viewer's event stream make ONE call from the Worker into the home region (docs/start-path.md). The Worker app runs here with its D1 and RunStream bindings wrapped
 * to count the calls it makes (the DOs keep the real ones: their calls are inside the home region).
 * The host's start answer is scripted (edge tests have no host), so the DO confirms the start and
 * the stream opens on the run's log.
 */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import app from "../../src/index.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { encodePageToken } from "../../src/shared/output-history.ts";
import { runResetEvent } from "../../src/shared/run-events.ts";
import { mintStreamToken } from "../../src/stream-tokens.ts";
import { interceptD1, interceptD1InPlace } from "../support/d1-intercept.ts";
import { aroundDurableObjectCalls } from "./durable-object-calls.ts";
import { readSse } from "../support/sse.ts";
import { admin, meteredOrg, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";
import { allFrames, closeEvent, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";

interface Counts {
  /** Calls on RunStream stubs (RPC methods and fetch). */
  runStream: number;
  /** D1 primary statements and batches. */
  d1: number;
  /** D1 reads through a read-replica session (withSession): near the Worker in production. */
  replica: number;
}

function countingD1(db: D1Database, counts: Counts, replicaHasRows: boolean): D1Database {
  return interceptD1(
    db,
    () => {
      counts.d1++;
    },
    {
      session: (session) =>
        interceptD1(session, (call) => {
          counts.replica++;
          // A replica that has not seen the row yet answers "no row".
          if (call.kind === "statement" && !replicaHasRows) {
            return { answer: call.method === "first" ? null : call.method === "raw" ? [] : { results: [] } };
          }
        }),
    },
  );
}

function countingRunStream(ns: Env["RUN_STREAM"], counts: Counts): Env["RUN_STREAM"] {
  return aroundDurableObjectCalls(ns, (_method, call) => {
    counts.runStream++;
    return call();
  });
}

/** One request through the app with counting bindings. */
async function counted(request: Request, options: { replicaHasRows?: boolean } = {}): Promise<{ res: Response; counts: Counts }> {
  const counts: Counts = { runStream: 0, d1: 0, replica: 0 };
  const countingEnv: Env = {
    ...env,
    DB: countingD1(env.DB, counts, options.replicaHasRows ?? true),
    RUN_STREAM: countingRunStream(env.RUN_STREAM, counts),
  };
  const res = await app.fetch(request, countingEnv, createExecutionContext());
  // Copied: the first byte is the home-region work; what follows (frames) is not counted.
  return { res, counts: { ...counts } };
}

/** Ends a response's stream (and so its subscription: a request holds only a few connections at once). */
const drop = async (p: Promise<{ res: Response }>) => (await p).res.body?.cancel();
/** A `hello` row accepted but not started yet (no Temporal run id): streams answer 503 until it starts. */
async function scheduledRun(organizationId: string) {
  const uuid = crypto.randomUUID();
  const workflowId = `hello-${uuid}`;
  await env.DB.prepare(
    "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES (?, ?, ?, 'hello', ?, 'scheduled', '{}')",
  )
    .bind(uuid, organizationId, helloId, workflowId)
    .run();
  return { uuid, workflowId };
}

const req = (path: string, init: RequestInit) => new Request(new URL(path, "http://edge.test"), init);

/** The first SSE frame of a response, then the stream is dropped. */
async function firstFrames(res: Response, n: number) {
  const frames: Array<{ event: string; data: string }> = [];
  for await (const m of readSse(res.body!)) {
    frames.push({ event: m.event, data: m.data });
    if (frames.length >= n) break;
  }
  return frames;
}

let org: Awaited<ReturnType<typeof seedOrganization>>;
let token: string;
let helloId: string;
let promptWorkflowId: string;

beforeAll(async () => {
  await seedCatalog();
  org = await seedOrganization();
  token = await new SignJWT({ org_id: org.organizationId })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode("edge-test-jwt-secret-at-least-32-bytes-long"));
  helloId = (await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{ id: string }>())!.id;
  const created = await admin("POST", `/admin/v1/organizations/${org.organizationId}/workflows`, {
    name: `wf ${crypto.randomUUID()}`,
    template: "Tell {{audience}} about {{topic}}.",
    model: "local/writer",
    maxOutputTokens: 100,
  });
  promptWorkflowId = ((await created.json()) as { id: string }).id;
  await admin("POST", `/admin/v1/workflows/${promptWorkflowId}/publish`);
});

/** The host answers every start with a run id (the DOs' calls to the host; the Worker makes none here). */
let hostStarts: string[];
/** Every call to the host (the Worker's and the DOs'), by path. */
let hostCalls: string[];
/** What the host answers a signal, query or update (else the host is unreachable for them). */
let hostInteract: (() => Response) | null;
/** What the host answers a reset (else the host is unreachable for it). */
let hostReset: (() => Response) | null;
/** What the host answers a result call (else the host is unreachable for it). */
let hostResult: ((workflowId: string) => Response | Promise<Response>) | null;
/** The Temporal run id the host gave each start, by workflow id. */
let hostRunIds: Map<string, string>;
let restoreHost: () => void;
beforeEach(() => {
  hostStarts = [];
  hostCalls = [];
  hostInteract = null;
  hostReset = null;
  hostResult = null;
  hostRunIds = new Map();
  restoreHost = scriptHost(async (request, path) => {
    hostCalls.push(path);
    if (hostInteract && /\/(signal|query|update)\//.test(path)) return hostInteract();
    if (hostReset && path.endsWith("/reset")) return hostReset();
    const result = /^\/v1\/runs\/([^/]+)\/result$/.exec(path);
    if (hostResult && result) return hostResult(decodeURIComponent(result[1]!));
    if (path === HOST_PATHS.start) {
      const body = (await request.json()) as { workflowId: string };
      hostStarts.push(body.workflowId);
      const runId = crypto.randomUUID();
      hostRunIds.set(body.workflowId, runId);
      return Response.json({ workflowId: body.workflowId, runId });
    }
    throw new TypeError("connection refused");
  });
});
afterEach(() => restoreHost());

const publishedStream = (body: unknown) =>
  req(`/api/v1/run/${promptWorkflowId}/stream`, {
    method: "POST",
    headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
const executeStream = (fields: Record<string, unknown>) =>
  req("/api/v1/workflow-runs/execute/stream", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(fields),
  });

describe("POST /workflow/start and /workflow/run: one call into the home region", () => {
  const post = (path: string, body: unknown) =>
    req(path, {
      method: "POST",
      headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  it("a start is one RunStream call (the DO holds, writes the row, starts through the host, records run.started), no D1 from the Worker", async () => {
    await drop(counted(post("/workflow/start", { workflowName: "hello", input: { name: "warm-up" } }))); // the isolate's key cache
    const { res, counts } = await counted(post("/workflow/start", { workflowName: "hello", input: { name: "Ada" } }));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { workflowId: string; runId: string | null };
    expect(hostStarts).toContain(body.workflowId);
    expect(body.runId).not.toBeNull();
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
  });

  it("a run is one RunStream call too: the DO starts it and waits for the outcome (here past the caller's timeout: Output's 408)", async () => {
    await drop(counted(post("/workflow/start", { workflowName: "hello", input: { name: "warm-up" } })));
    // The host says the run goes on; the DO waits (its calls to the host are home-region calls of its own).
    hostResult = (id) =>
      Response.json({ workflowId: id, runId: crypto.randomUUID(), status: "running", output: null, error: null, closeTime: null });
    const { res, counts } = await counted(post("/workflow/run", { workflowName: "hello", input: { name: "Ada" }, timeout: 250 }));
    expect(res.status).toBe(408); // WorkflowExecutionTimedOutError, as Output answers a wait that runs out
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    await res.body?.cancel();
  });

  it("once the host has the outcome, one D1 call: the outcome written and the row read back in one batch", async () => {
    await drop(counted(post("/workflow/start", { workflowName: "hello", input: { name: "warm-up" } })));
    let outcomeSent = false;
    const afterOutcome: string[] = [];
    const undo = interceptD1InPlace(env.DB, (call) => {
      if (outcomeSent) afterOutcome.push(call.kind === "statement" ? call.sql : call.kind);
    });
    hostResult = async (id) => {
      // After the DO's first read of the row (it asks the host and reads the row at once).
      await new Promise((r) => setTimeout(r, 50));
      outcomeSent = true;
      const runId = hostRunIds.get(id);
      return Response.json({
        workflowId: id,
        runId,
        status: "completed",
        output: { greeting: "Hello, Ada" },
        error: null,
        closeTime: new Date().toISOString(),
      });
    };
    try {
      const res = await app.fetch(
        post("/workflow/run", { workflowName: "hello", input: { name: "Ada" }, timeout: 5_000 }),
        env,
        createExecutionContext(),
      );
      expect(res.status).toBe(200);
      const body = (await res.json()) as { workflowId: string; status: string; output: unknown };
      expect(body).toMatchObject({ status: "completed", output: { greeting: "Hello, Ada" } });
      expect(afterOutcome).toEqual(["batch"]);
      // What the answer said is what D1 has.
      const row = await env.DB.prepare("SELECT status, output FROM runs WHERE temporal_workflow_id = ?").bind(body.workflowId).first();
      expect(row).toEqual({ status: "completed", output: JSON.stringify({ greeting: "Hello, Ada" }) });
    } finally {
      undo();
    }
  });
});

describe("streaming starts: one call into the home region", () => {
  it("POST /api/v1/run/{id}/stream starts the run and opens its stream in one RunStream call, no D1 from the Worker", async () => {
    await drop(counted(publishedStream({ audience: "a", topic: "warm-up" }))); // fills the isolate's key cache
    const { res, counts } = await counted(publishedStream({ audience: "engineers", topic: "streams" }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const workflowId = res.headers.get("x-run-id")!;
    expect(hostStarts).toContain(workflowId);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    await res.body!.cancel();
  });

  it("POST /api/v1/workflow-runs/execute/stream starts the run and streams from run.started in one RunStream call", async () => {
    await drop(counted(executeStream({ workflowId: helloId, inputs: { name: "warm-up" } }))); // the id → name cache
    const { res, counts } = await counted(executeStream({ workflowId: helloId, inputs: { name: "Ada" } }));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    const frames = await firstFrames(res, 1);
    expect(frames[0]!.event).toBe("workflow-run");
    expect(JSON.parse(frames[0]!.data)).toMatchObject({ content: { status: "running" } });
  });

  it("refusals are the same 4xx as before, decided in the same one call", async () => {
    const bad = await counted(publishedStream({ audience: "a" }));
    expect(bad.res.status).toBe(400);
    expect(((await bad.res.json()) as { error: { code: string } }).error.code).toBe("invalid_input");
    expect(bad.counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    const input = await counted(executeStream({ workflowId: helloId, inputs: { name: 42 } }));
    expect(input.res.status).toBe(400);
    expect(((await input.res.json()) as { error: { code: string } }).error.code).toBe("invalid_input");
    expect(input.counts.runStream).toBe(1);
    expect(hostStarts).toEqual([]);
  });

  it("a start the host does not confirm is a 202 with the accepted run, still one call", async () => {
    restoreHost(); // the host is unreachable again
    const { res, counts } = await counted(executeStream({ workflowId: helloId, inputs: { name: "Ada" } }));
    expect(res.status).toBe(202);
    const body = (await res.json()) as { success: boolean; workflowRun: { status: string; activityRuns: unknown[] } };
    expect(body).toMatchObject({ success: true, workflowRun: { status: "scheduled", activityRuns: [] } });
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
  });

  it("a command too big for the start command's headers takes the two-call path and still streams", async () => {
    // 12 values of 8 KiB (the most each may be): ~130 KB of base64, over the headers' 72 KB.
    const envs = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`BIG_${i}`, "x".repeat(8192)]));
    const { res, counts } = await counted(executeStream({ workflowId: helloId, inputs: { name: "Ada" }, envs }));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 2, d1: 0, replica: 0 });
    const frames = await firstFrames(res, 1);
    expect(frames[0]!.event).toBe("workflow-run");
  });
});

describe("GET /api/v1/workflow-runs/{runId}/stream: one call into the home region", () => {
  const open = (runUuid: string) => req(`/api/v1/workflow-runs/${runUuid}/stream`, { headers: { authorization: `Bearer ${token}` } });
  const uuidOf = async (workflowId: string) =>
    (await env.DB.prepare("SELECT id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ id: string }>())!.id;

  it("finds the run's DO through a read-replica session and subscribes with its admission: one RunStream call, no primary read", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [closeEvent(runId, 2), finishedEvent(runId)]);
    const { res, counts } = await counted(open(await uuidOf(workflowId)));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 1 });
    const events = [];
    for await (const m of readSse(res.body!)) events.push(m.event);
    expect(events).toEqual(["workflow-run", "workflow-run", "result"]);
  });

  it("a replica that has not seen the row yet: the primary answers (two calls), same stream", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    const { res, counts } = await counted(open(await uuidOf(workflowId)), { replicaHasRows: false });
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 1, replica: 1 });
    expect((await firstFrames(res, 1))[0]!.event).toBe("workflow-run");
  });

  it("another organization's run and an unknown id are 404 run_not_found; a run not started yet is 503 with Retry-After", async () => {
    const other = await seedOrganization();
    const foreign = await createRunningRun(other.organizationId);
    for (const id of [await uuidOf(foreign.workflowId), crypto.randomUUID(), "not-a-uuid"]) {
      const { res } = await counted(open(id));
      expect(res.status, id).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("run_not_found");
    }
    const { uuid } = await scheduledRun(org.organizationId);
    const { res, counts } = await counted(open(uuid));
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(counts.runStream).toBe(1);
  });
});

describe("reads and interactions by workflow id: one call into the home region", () => {
  const get = (path: string) => req(path, { headers: { authorization: `Bearer ${org.key}` } });
  const post = (path: string, body: unknown = {}) =>
    req(path, {
      method: "POST",
      headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  /** The /workflow routes answer in Output's envelope: `{error: <name>, code, message}`. */
  const codeOf = async (res: Response) => ((await res.json()) as { code: string }).code;
  const finish = async (workflowId: string, runId: string) => {
    await push(workflowId, [closeEvent(runId, 2), finishedEvent(runId)]);
    await env.DB.prepare("UPDATE runs SET status = 'completed' WHERE temporal_workflow_id = ?").bind(workflowId).run();
  };

  beforeAll(async () => {
    await drop(counted(get("/workflow/catalog"))); // fills the isolate's key cache
  });

  it("GET /workflow/{id}/history: the ownership check reads a replica, the page is the one RunStream call", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2)]);
    const { res, counts } = await counted(get(`/workflow/${workflowId}/history`));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 1 });
    expect(hostCalls).toEqual([]);
    const body = (await res.json()) as { runId: string; events: unknown[] };
    expect(body.runId).toBe(runId);
    expect(body.events.length).toBeGreaterThan(0);
  });

  it("GET /workflow/{id}/history long-poll: one RunStream call that waits in the DO and wakes when events arrive", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const tip = encodeURIComponent(encodePageToken({ runId, afterEventId: 1 }));
    const polling = counted(get(`/workflow/${workflowId}/history?runId=${runId}&pageToken=${tip}&longPollTimeoutMs=10000`));
    // Long enough for a Worker-side poll (every 250 ms before) to have made several calls.
    await new Promise((r) => setTimeout(r, 800));
    await push(workflowId, [historyEvent(runId, 2)]);
    const { res, counts } = await polling;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { events: Array<{ eventId: string }> }).events.map((e) => e.eventId)).toEqual(["2"]);
    expect(counts.runStream).toBe(1);
  });

  it("GET /workflow/{id}/history first page of a run whose first events are on their way: one RunStream call, with them", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    const reading = counted(get(`/workflow/${workflowId}/history`));
    await new Promise((r) => setTimeout(r, 600));
    await push(workflowId, [historyEvent(runId, 1)]);
    const { res, counts } = await reading;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { events: unknown[] }).events).toHaveLength(1);
    expect(counts.runStream).toBe(1);
  });

  it("GET /workflow/{id}/history long-poll of a run the workflow never had: 404 at once, no wait", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const unknown = crypto.randomUUID();
    const { res } = await counted(get(`/workflow/${workflowId}/history?runId=${unknown}&longPollTimeoutMs=15000`));
    expect(res.status).toBe(404);
    expect(await codeOf(res)).toBe("run_not_found");
  });

  it("GET /workflow/{id}/history: a replica without the row yet falls back to the primary; unknown and foreign runs stay 404", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const { res, counts } = await counted(get(`/workflow/${workflowId}/history`), { replicaHasRows: false });
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 1, replica: 1 });
    const foreign = await createRunningRun((await seedOrganization()).organizationId);
    for (const id of [foreign.workflowId, `two_steps-${crypto.randomUUID()}`]) {
      const missing = await counted(get(`/workflow/${id}/history`));
      expect(missing.res.status).toBe(404);
      expect(await codeOf(missing.res)).toBe("run_not_found");
      expect(missing.counts.runStream).toBe(0);
    }
  });

  it("status, result and input: ownership read near the Worker, the row in the one RunStream call; unknown and foreign ids never reach a DO", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await finish(workflowId, runId);
    for (const suffix of ["status", "result", "input"]) {
      const { res, counts } = await counted(get(`/workflow/${workflowId}/${suffix}`));
      expect(res.status, suffix).toBe(200);
      expect(counts, suffix).toEqual({ runStream: 1, d1: 0, replica: 1 });
    }
    const foreign = await createRunningRun((await seedOrganization()).organizationId);
    for (const id of [foreign.workflowId, `two_steps-${crypto.randomUUID()}`]) {
      for (const path of [`/workflow/${id}/status`, `/workflow/${id}/result`, `/workflow/${id}/runs/${crypto.randomUUID()}/status`]) {
        const missing = await counted(get(path));
        expect(missing.res.status, path).toBe(404);
        expect(await codeOf(missing.res)).toBe("run_not_found");
        expect(missing.counts, path).toEqual({ runStream: 0, d1: 1, replica: 1 });
      }
    }
  });

  it("pinned status, result and input of a run a reset replaced: the same one RunStream call (the run from its log)", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId, "failed")]);
    const newRunId = crypto.randomUUID();
    await push(workflowId, [runResetEvent(newRunId, runId)]);
    for (const [rid, status] of [
      [runId, "failed"],
      [newRunId, "running"],
    ]) {
      for (const suffix of ["status", "result", "input"]) {
        const { res, counts } = await counted(get(`/workflow/${workflowId}/runs/${rid}/${suffix}`));
        if (suffix === "result" && status === "running") expect(res.status).toBe(424);
        else expect(res.status, `${status} ${suffix}`).toBe(200);
        if (res.status === 200) expect(await res.json()).toMatchObject({ runId: rid });
        expect(counts, `${status} ${suffix}`).toEqual({ runStream: 1, d1: 0, replica: 1 });
      }
    }
    const unknown = await counted(get(`/workflow/${workflowId}/runs/${crypto.randomUUID()}/status`));
    expect(unknown.res.status).toBe(404);
    expect(unknown.counts).toEqual({ runStream: 1, d1: 0, replica: 1 });
  });

  it("GET /workflow/{id}/history/stream: ownership read near the Worker, the admission and stream in the one RunStream call; unknown and foreign ids never reach a DO", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const { res, counts } = await counted(get(`/workflow/${workflowId}/history/stream`));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 1 });
    await res.body?.cancel();
    // Any tenant can name any id: a 404 decided near the Worker creates no DO (and no storage) for it.
    const foreign = await createRunningRun((await seedOrganization()).organizationId);
    for (const id of [foreign.workflowId, `two_steps-${crypto.randomUUID()}`]) {
      for (const path of [`/workflow/${id}/history/stream`, `/workflow/${id}/runs/${crypto.randomUUID()}/history/stream`]) {
        const missing = await counted(get(path));
        expect(missing.res.status, path).toBe(404);
        expect(await codeOf(missing.res)).toBe("run_not_found");
        expect(missing.counts, path).toEqual({ runStream: 0, d1: 1, replica: 1 });
      }
    }
  });

  it("signal, query and update: the row and the catalog are read near the Worker, the host call is the one call", async () => {
    const { workflowId } = await createRunningRun(org.organizationId, "approval");
    hostInteract = () => Response.json({ result: { ok: 1 } });
    const signal = await counted(post(`/workflow/${workflowId}/signal/approve`, { payload: { approvedBy: "ada" } }));
    expect(signal.res.status).toBe(200);
    expect(await signal.res.json()).toEqual({ workflowId, signal: "approve", delivered: true });
    expect(signal.counts).toEqual({ runStream: 0, d1: 0, replica: 2 });
    expect(hostCalls).toEqual([HOST_PATHS.interact(workflowId, "signal", "approve")]);
    for (const [kind, name] of [
      ["query", "progress"],
      ["update", "setPriority"],
    ] as const) {
      hostCalls = [];
      const { res, counts } = await counted(post(`/workflow/${workflowId}/${kind}/${name}`, { payload: { p: 1 } }));
      expect(res.status, kind).toBe(200);
      expect(await res.json()).toEqual({ ok: 1 });
      expect(counts, kind).toEqual({ runStream: 0, d1: 0, replica: 2 });
      expect(hostCalls).toEqual([HOST_PATHS.interact(workflowId, kind, name)]);
    }
  });

  it("refusals keep their codes: unknown handler 404 and a finished run 409 without reaching the host; the host's own 409 passes through", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId, "approval");
    hostInteract = () => Response.json({ result: null });
    const unknown = await counted(post(`/workflow/${workflowId}/signal/nope`));
    expect(unknown.res.status).toBe(404);
    expect(await codeOf(unknown.res)).toBe("handler_not_found");
    // A run the replica sees open but that has just ended: the host refuses it, with the same code.
    hostInteract = () =>
      Response.json({ error: { code: "run_finished", message: `run ${workflowId} already ended (COMPLETED)` } }, { status: 409 });
    const raced = await counted(post(`/workflow/${workflowId}/signal/approve`));
    expect(raced.res.status).toBe(409);
    expect(await codeOf(raced.res)).toBe("run_finished");
    hostCalls = [];
    await finish(workflowId, runId);
    for (const path of [`/workflow/${workflowId}/signal/approve`, `/workflow/${workflowId}/update/setPriority`]) {
      const { res, counts } = await counted(post(path));
      expect(res.status, path).toBe(409);
      expect(await codeOf(res)).toBe("run_finished");
      // The replica said "ended": confirmed on the primary (a reset may have reopened the run) before refusing.
      expect(counts).toEqual({ runStream: 0, d1: 1, replica: 2 });
    }
    expect(hostCalls).toEqual([]);
  });

  it("POST /workflow/{id}/runs/{rid}/reset: the run's DO marks it and takes the credit hold, the host resets, the DO records the new run: three calls, metered or not", async () => {
    for (const metered of [false, true]) {
      const owner = metered ? await meteredOrg(1_000_000) : org;
      const as = (path: string, body: unknown) =>
        req(path, {
          method: "POST",
          headers: { authorization: `Bearer ${owner.key}`, "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      if (metered) await drop(counted(as("/workflow/catalog", {}))); // fills the isolate's key cache
      const { workflowId, runId } = await createRunningRun(owner.organizationId);
      const newRunId = crypto.randomUUID();
      hostReset = () => Response.json({ workflowId, runId: newRunId, resetFromRunId: runId });
      hostCalls = [];
      const { res, counts } = await counted(as(`/workflow/${workflowId}/runs/${runId}/reset`, { stepName: "countWords" }));
      expect(res.status, `metered: ${metered}`).toBe(200);
      expect(await res.json()).toEqual({ workflowId, runId: newRunId });
      // The hold's read and UPDATE are inside the DO's call; the Worker reads only a replica.
      expect(counts, `metered: ${metered}`).toEqual({ runStream: 2, d1: 0, replica: 1 });
      expect(hostCalls).toEqual([HOST_PATHS.reset(workflowId)]);
      const row = await env.DB.prepare("SELECT temporal_run_id, credit_hold FROM runs WHERE temporal_workflow_id = ?")
        .bind(workflowId)
        .first();
      expect(row).toEqual({ temporal_run_id: newRunId, credit_hold: metered ? Number(env.CODE_RUN_CREDIT_HOLD) : 0 });
    }
  });

  it("POST /workflow/{id}/stream-token checks ownership near the Worker: no call into the home region", async () => {
    const { workflowId } = await createRunningRun(org.organizationId);
    const { res, counts } = await counted(post(`/workflow/${workflowId}/stream-token`));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 0, d1: 0, replica: 1 });
    const missing = await counted(post(`/workflow/two_steps-${crypto.randomUUID()}/stream-token`));
    expect(missing.res.status).toBe(404);
    expect(await codeOf(missing.res)).toBe("run_not_found");
  });
});

describe("GET /workflow/{id}/trace-log: one call into the home region", () => {
  const get = (path: string, key = org.key) => req(path, { headers: { authorization: `Bearer ${key}` } });
  const codeOf = async (res: Response) => ((await res.json()) as { code: string }).code;
  /** A run whose history is complete and whose row (the primary's) is `completed`: its trace exists. */
  const finishedRun = async () => {
    const run = await createRunningRun(org.organizationId);
    await push(run.workflowId, [historyEvent(run.runId, 1), closeEvent(run.runId, 2), finishedEvent(run.runId)]);
    return run;
  };
  const traceOf = async (res: Response) => (await res.json()) as { source: string; runId: string; data: { kind: string } };

  beforeAll(async () => {
    await drop(counted(get("/workflow/catalog"))); // fills the isolate's key cache
  });

  it("the latest run's trace: ownership read near the Worker, the finished row and the trace in one RunStream call", async () => {
    const { workflowId, runId } = await finishedRun();
    const { res, counts } = await counted(get(`/workflow/${workflowId}/trace-log`));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 1 });
    expect(hostCalls).toEqual([]);
    expect(await traceOf(res)).toMatchObject({ source: "remote", runId, data: { kind: "workflow" } });
  });

  it("trace attributes (/trace-attributes, /runs/{rid}/trace-attributes): the trace log's one RunStream call", async () => {
    const { workflowId, runId } = await finishedRun();
    for (const path of [`/workflow/${workflowId}/trace-attributes`, `/workflow/${workflowId}/runs/${runId}/trace-attributes`]) {
      const { res, counts } = await counted(get(path));
      expect(res.status, path).toBe(200);
      expect(counts, path).toEqual({ runStream: 1, d1: 0, replica: 1 });
      expect(((await res.json()) as { runId: string }).runId).toBe(runId);
    }
  });

  it("a pinned run's trace (/runs/{rid}/trace-log): one RunStream call", async () => {
    const { workflowId, runId } = await finishedRun();
    const { res, counts } = await counted(get(`/workflow/${workflowId}/runs/${runId}/trace-log`));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 1 });
    expect((await traceOf(res)).runId).toBe(runId);
  });

  it("a row not final yet is settled with Temporal inside the DO: the host's answer, the row and the trace, still one call", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2)]); // the close event came, run.finished did not
    hostResult = (id) => Response.json({ workflowId: id, runId, status: "completed", output: { ok: 1 }, error: null, closeTime: null });
    const { res, counts } = await counted(get(`/workflow/${workflowId}/trace-log`));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 1 });
    expect(hostCalls).toEqual([HOST_PATHS.result(workflowId)]);
    expect((await traceOf(res)).runId).toBe(runId);
    const row = await env.DB.prepare("SELECT status FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ status: string }>();
    expect(row!.status).toBe("completed");
  });

  it("a running run is 424 run_not_finished with Retry-After, decided in the same one call", async () => {
    const { workflowId, runId } = await createRunningRun(org.organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    hostResult = (id) => Response.json({ workflowId: id, runId, status: "running", output: null, error: null, closeTime: null });
    for (const path of [`/workflow/${workflowId}/trace-log`, `/workflow/${workflowId}/runs/${runId}/trace-log`]) {
      const { res, counts } = await counted(get(path));
      expect(res.status, path).toBe(424);
      expect(res.headers.get("retry-after")).toBe("2");
      expect(await codeOf(res)).toBe("run_not_finished");
      expect(counts, path).toEqual({ runStream: 1, d1: 0, replica: 1 });
    }
  });

  it("a replica without the row, or one behind a reset, cannot turn a run into a 404 or a finished answer", async () => {
    const { workflowId, runId } = await finishedRun();
    // A replica that has not seen the row yet: the primary confirms the owner (two calls), same trace.
    const fresh = await counted(get(`/workflow/${workflowId}/trace-log`), { replicaHasRows: false });
    expect(fresh.res.status).toBe(200);
    expect(fresh.counts).toEqual({ runStream: 1, d1: 1, replica: 1 });
    expect((await traceOf(fresh.res)).runId).toBe(runId);
    // A reset reopened the run on a new Temporal run (the primary has it; a replica may still say completed):
    // the latest trace waits for the new run; the old run's stays readable pinned.
    const newRunId = crypto.randomUUID();
    await env.DB.prepare("UPDATE runs SET status = 'running', temporal_run_id = ? WHERE temporal_workflow_id = ?")
      .bind(newRunId, workflowId)
      .run();
    const reopened = await counted(get(`/workflow/${workflowId}/trace-log`));
    expect(reopened.res.status).toBe(424);
    expect(await codeOf(reopened.res)).toBe("run_not_finished");
    expect(reopened.counts).toEqual({ runStream: 1, d1: 0, replica: 1 });
    const pinned = await counted(get(`/workflow/${workflowId}/runs/${runId}/trace-log`));
    expect(pinned.res.status).toBe(200);
    expect((await traceOf(pinned.res)).runId).toBe(runId);
  });

  it("security: another organization's run and an unknown id are 404 run_not_found, with nothing of the run in the answer", async () => {
    const { workflowId, runId } = await finishedRun();
    const other = await seedOrganization();
    await drop(counted(get("/workflow/catalog", other.key))); // the other key in the isolate's cache
    for (const path of [`/workflow/${workflowId}/trace-log`, `/workflow/${workflowId}/runs/${runId}/trace-log`]) {
      const { res, counts } = await counted(get(path, other.key));
      expect(res.status, path).toBe(404);
      const text = await res.text();
      expect(JSON.parse(text).code).toBe("run_not_found");
      expect(text).not.toContain(runId);
      // Refused near the Worker (the replica, then the primary): no DO is reached, so none is created.
      expect(counts).toEqual({ runStream: 0, d1: 1, replica: 1 });
    }
    const unknown = await counted(get(`/workflow/two_steps-${crypto.randomUUID()}/trace-log`));
    expect(unknown.res.status).toBe(404);
    expect(await codeOf(unknown.res)).toBe("run_not_found");
    expect(unknown.counts).toEqual({ runStream: 0, d1: 1, replica: 1 });
    const unknownRun = await counted(get(`/workflow/${workflowId}/runs/${crypto.randomUUID()}/trace-log`));
    expect(unknownRun.res.status).toBe(404);
    expect(await codeOf(unknownRun.res)).toBe("run_not_found");
  });
});

describe("GET /runs/{id}/events (the run viewer's stream): one call into the home region", () => {
  const STREAM_SECRET = "edge-test-stream-token-secret-long-enough-for-hs256";
  const open = async (workflowId: string, lastEventId?: string, organizationId = org.organizationId) => {
    const { token: streamToken } = await mintStreamToken(STREAM_SECRET, { organizationId, workflowId, apiKeyId: org.keyId });
    return req(`/runs/${workflowId}/events?token=${streamToken}`, { headers: lastEventId ? { "last-event-id": lastEventId } : {} });
  };
  const codeOf = async (res: Response) => ((await res.json()) as { error: { code: string } }).error.code;
  const finishedRun = async () => {
    const run = await createRunningRun(org.organizationId);
    await push(run.workflowId, [historyEvent(run.runId, 1), closeEvent(run.runId, 2), finishedEvent(run.runId)]);
    return run;
  };

  it("the admission (this organization's run, started) rides on the one subscription: no D1 from the Worker", async () => {
    const { workflowId } = await finishedRun();
    const { res, counts } = await counted(await open(workflowId));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    // A fresh stream token first (the stream was opened with one), minted in the Worker: no call.
    expect((await allFrames(res)).map((f) => f.event)).toEqual(["token", "run", "run", "done"]);
  });

  it("Last-Event-ID past a finished run's last shown entry is 204 in the same one call; before it, the rest", async () => {
    const { workflowId } = await finishedRun();
    const frames = await allFrames((await counted(await open(workflowId))).res);
    const ids = frames.filter((f) => f.id).map((f) => f.id!);
    const atEnd = await counted(await open(workflowId, ids.at(-1)));
    expect(atEnd.res.status).toBe(204);
    expect(atEnd.counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    const rest = await counted(await open(workflowId, ids[0]));
    expect(rest.res.status).toBe(200);
    expect(rest.counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    expect((await allFrames(rest.res)).map((f) => [f.event, f.id])).toEqual([
      ["token", undefined],
      ["run", ids[1]],
      ["done", undefined],
    ]);
  });

  it("reads no replica: a replica without the row answers nothing here; a run a reset reopened is followed, not ended with 204", async () => {
    const { workflowId } = await finishedRun();
    const fresh = await counted(await open(workflowId), { replicaHasRows: false });
    expect(fresh.res.status).toBe(200);
    expect(fresh.counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    const ids = (await allFrames(fresh.res)).filter((f) => f.id).map((f) => f.id!);
    // The primary's row follows a new run (a reset): the client that saw all of the old run gets the new one's stream.
    const newRunId = crypto.randomUUID();
    await env.DB.prepare("UPDATE runs SET status = 'running', temporal_run_id = ? WHERE temporal_workflow_id = ?")
      .bind(newRunId, workflowId)
      .run();
    const { res, counts } = await counted(await open(workflowId, ids.at(-1)));
    expect(res.status).toBe(200);
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    await push(workflowId, [
      { sourceKey: `run:${newRunId}:started`, type: "run.started", at: new Date().toISOString(), data: { runId: newRunId } },
    ]);
    const [renewal, first] = (await firstFrames(res, 2)) as [{ event: string }, { event: string; data: string }];
    expect(renewal.event).toBe("token");
    expect(first.event).toBe("run");
    expect(JSON.parse(first.data)).toMatchObject({ state: "started", runId: newRunId });
  });

  it("security: a token for another organization's run or an unknown run is 404 run_not_found; a run not started yet is 503 with Retry-After", async () => {
    const other = await seedOrganization();
    const foreign = await createRunningRun(other.organizationId);
    for (const workflowId of [foreign.workflowId, `two_steps-${crypto.randomUUID()}`]) {
      const { res, counts } = await counted(await open(workflowId));
      expect(res.status, workflowId).toBe(404);
      const text = await res.text();
      expect(JSON.parse(text).error.code).toBe("run_not_found");
      expect(text).not.toContain(foreign.runId);
      expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
    }
    const { workflowId } = await scheduledRun(org.organizationId);
    const { res, counts } = await counted(await open(workflowId));
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(await codeOf(res)).toBe("host_unavailable");
    expect(counts).toEqual({ runStream: 1, d1: 0, replica: 0 });
  });
});
