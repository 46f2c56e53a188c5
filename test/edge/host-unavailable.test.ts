import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { ApiError } from "../../src/errors.ts";
import { HOST_CALL_WAIT_MS, HostClient } from "../../src/host-client.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import { MIN_SECRET_LENGTH } from "../../src/shared/signing.ts";
import { admin, call, postJson, scriptedStart, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";

// In edge tests HOST_URL points at a closed port, so every call to the host fails to connect.
// The edge cannot tell a refused connection from an answer lost after the host started the run,
// so the start is accepted: its row stays `scheduled` and the run's DO retries it (docs/start-path.md).
describe("when the host cannot be reached", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("/workflow/start accepts the run: 200 with runId null and status scheduled; the row stays scheduled with a retry armed", async () => {
    const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: "Ada" } }, org.key);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { workflowId: string; runId: string | null; status: string };
    expect(body).toMatchObject({ runId: null, status: "scheduled" });
    const row = await env.DB.prepare("SELECT status FROM runs WHERE temporal_workflow_id = ?").bind(body.workflowId).first();
    expect(row).toEqual({ status: "scheduled" });
    // The outbox's retry is armed in the run's DO, and a status read answers from the row.
    const alarm = await runInDurableObject(runStream(env, body.workflowId), (_instance, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    const status = await (await call(`/workflow/${body.workflowId}/status`, { headers: { authorization: `Bearer ${org.key}` } })).json();
    expect(status).toMatchObject({ status: "scheduled", runId: null });
  });

  it("/workflow/run waits for the start through its whole timeout, then is 408 with a Location to poll (never a 2xx Output's clients would read as finished); the run stays accepted", async () => {
    const started = Date.now();
    const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "Ada" }, timeout: 1_500 }, org.key);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_500);
    expect(res.status).toBe(408);
    const body = (await res.json()) as { workflowId: string; error: string; code: string };
    expect(body).toMatchObject({ error: "WorkflowExecutionTimedOutError", code: "wait_timed_out" });
    expect(res.headers.get("location")).toBe(`/workflow/${body.workflowId}/result`);
    const rows = await env.DB.prepare("SELECT status FROM runs WHERE organization_id = ? AND temporal_workflow_id = ?")
      .bind(org.organizationId, body.workflowId)
      .all();
    expect(rows.results).toEqual([{ status: "scheduled" }]);
    const alarm = await runInDurableObject(runStream(env, body.workflowId), (_instance, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
  });
});

describe("a start the host confirms only on the outbox's retry", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  let restore: () => void;
  /** Start attempts the scripted host got, by workflow id. */
  const attempts = new Map<string, number>();
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
    restore = scriptHost(async (request, path) => {
      if (path === HOST_PATHS.start) {
        const { workflowId } = (await request.clone().json()) as { workflowId: string };
        attempts.set(workflowId, (attempts.get(workflowId) ?? 0) + 1);
        // The first attempt gets no answer (the host restarting); the outbox's retry gets the run.
        if (attempts.get(workflowId) === 1) throw new TypeError("connection refused");
        return Response.json(await scriptedStart(request));
      }
      if (path.endsWith("/result")) {
        const workflowId = decodeURIComponent(path.split("/").at(-2)!);
        const runId = new URL(request.url).searchParams.get("runId") ?? crypto.randomUUID();
        const closeTime = new Date().toISOString();
        return Response.json({ workflowId, runId, status: "completed", output: { greeting: "Hello, Ada!" }, error: null, closeTime });
      }
      throw new TypeError("connection refused");
    });
  });
  afterAll(() => restore());

  it("/workflow/run waits through it: the outbox's retry starts the run within the timeout and the answer is its outcome, one run", async () => {
    const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "Ada" }, timeout: 30_000 }, org.key);
    const body = (await res.json()) as { workflowId: string; runId: string | null; status: string; output: unknown };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body).toMatchObject({ status: "completed", output: { greeting: "Hello, Ada!" } });
    expect(body.runId).not.toBeNull();
    expect(attempts.get(body.workflowId)).toBe(2);
    const rows = await env.DB.prepare("SELECT temporal_run_id FROM runs WHERE temporal_workflow_id = ?").bind(body.workflowId).all();
    expect(rows.results).toEqual([{ temporal_run_id: body.runId }]);
  });

  it("/workflow/start still answers at once, runId null and scheduled: it never waits", async () => {
    const started = Date.now();
    const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: "Ada" } }, org.key);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ runId: null, status: "scheduled" });
    expect(Date.now() - started).toBeLessThan(4_000);
  });
});

describe("when the host cannot be reached: the streaming starts", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });
  const rowOf = (workflowId: string) =>
    env.DB.prepare("SELECT status, organization_id AS org FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first();

  it("POST /api/v1/run/{id}/stream answers 202 {workflowId, status: scheduled} with x-run-id, not a stream; the run is accepted", async () => {
    const created = await admin("POST", `/admin/v1/organizations/${org.organizationId}/workflows`, {
      name: `wf ${crypto.randomUUID()}`,
      template: "Tell {{audience}} about {{topic}}.",
      model: "local/writer",
      maxOutputTokens: 100,
    });
    const { id } = (await created.json()) as { id: string };
    expect((await admin("POST", `/admin/v1/workflows/${id}/publish`)).ok).toBe(true);
    const res = await postJson(`/api/v1/run/${id}/stream`, { audience: "you", topic: "outages" }, org.key);
    expect(res.status).toBe(202);
    expect(res.headers.get("content-type")).toContain("application/json");
    const body = (await res.json()) as { workflowId: string; status: string };
    expect(body).toEqual({ workflowId: expect.stringMatching(new RegExp(`^${id}-`)), status: "scheduled" });
    expect(res.headers.get("x-run-id")).toBe(body.workflowId);
    expect(await rowOf(body.workflowId)).toEqual({ status: "scheduled", org: org.organizationId });
    const alarm = await runInDurableObject(runStream(env, body.workflowId), (_instance, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
  });

  it("POST /api/v1/workflow-runs/execute/stream answers 202 with the accepted run (scheduled), not a stream", async () => {
    const helloId = (await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{
      id: string;
    }>())!.id;
    const res = await call("/api/v1/workflow-runs/execute/stream", {
      method: "POST",
      headers: {
        authorization: "Bearer edge-test-internal-secret-of-32-characters",
        "x-organization-id": org.organizationId,
        "content-type": "application/json",
      },
      body: JSON.stringify({ workflowId: helloId, inputs: { name: "Ada" } }),
    });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { success: boolean; workflowRun: { id: string; status: string } };
    expect(body.success).toBe(true);
    expect(body.workflowRun.status).toBe("scheduled");
    expect(await rowOf(`hello-${body.workflowRun.id}`)).toEqual({ status: "scheduled", org: org.organizationId });
  });
});

describe("host failures that are not outages (security: no retry that cannot work)", () => {
  const client = () => new HostClient({ ...env, HOST_URL: "http://host.test" } as Env);
  const answer = (status: number, code: string) =>
    vi.spyOn(globalThis, "fetch").mockResolvedValue(Response.json({ error: { code, message: "m" } }, { status }));
  afterEach(() => vi.restoreAllMocks());

  async function failure(p: Promise<unknown>) {
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApiError);
    return err as ApiError;
  }

  it("the host's 500 (it failed on this request, e.g. a payload it cannot handle) → 500 internal_error, no Retry-After", async () => {
    answer(500, "host_error");
    const err = await failure(client().interact("approval-x", "signal", "approve", {}));
    expect([err.code, err.status, err.headers?.["retry-after"]]).toEqual(["internal_error", 500, undefined]);
  });

  it("the host's 401 (edge and host disagree on the secret) → 500 internal_error, no Retry-After", async () => {
    answer(401, "bad_signature");
    const err = await failure(client().interact("approval-x", "signal", "approve", {}));
    expect([err.code, err.status, err.headers?.["retry-after"]]).toEqual(["internal_error", 500, undefined]);
  });

  it("an edge with no HOST_SHARED_SECRET (a deploy without the secret) → 500 internal_error, no Retry-After, nothing sent", async () => {
    const sent = vi.spyOn(globalThis, "fetch");
    const unsigned = new HostClient({ ...env, HOST_URL: "http://host.test", HOST_SHARED_SECRET: "" } as Env);
    for (const call of [unsigned.ready(), unsigned.interact("approval-x", "signal", "approve", {})]) {
      const err = await failure(call);
      expect([err.code, err.status, err.headers?.["retry-after"]]).toEqual(["internal_error", 500, undefined]);
    }
    expect(sent).not.toHaveBeenCalled();
  });

  it("security: an edge whose HOST_SHARED_SECRET holds a value shorter than MIN_SECRET_LENGTH signs nothing: 500 internal_error, logged without the secret, nothing sent", async () => {
    const sent = vi.spyOn(globalThis, "fetch");
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const short = "s".repeat(MIN_SECRET_LENGTH - 1);
    const long = `edge-test-long-enough-${"l".repeat(MIN_SECRET_LENGTH)}`;
    // The old value of a rotation too: a short one in the list means the setting is wrong, whichever signs.
    for (const setting of ["x", short, `${short},${long}`, `${long},${short}`]) {
      const weak = new HostClient({ ...env, HOST_URL: "http://host.test", HOST_SHARED_SECRET: setting } as Env);
      for (const call of [weak.ready(), weak.interact("approval-x", "signal", "approve", {})]) {
        const err = await failure(call);
        expect([err.code, err.status, err.headers?.["retry-after"]]).toEqual(["internal_error", 500, undefined]);
        expect(err.message).not.toContain(short);
      }
    }
    expect(sent).not.toHaveBeenCalled();
    const lines = logged.mock.calls.map((args) => args.join(" "));
    expect(lines).toHaveLength(8);
    for (const line of lines) {
      expect(line).toContain("HOST_SHARED_SECRET");
      expect(line).toContain(`${MIN_SECRET_LENGTH} characters`);
      expect(line).not.toContain(short);
    }
  });

  it(
    "a host that takes a cancel, terminate, follow or result and never answers: each gives up after HOST_CALL_WAIT_MS (a result: after its waitMs too) with 503 host_unavailable and Retry-After, as each is safe to repeat",
    async () => {
      const aborted: string[] = [];
      // Honours the edge's abort, as a real connection does; answers nothing before it. Only this
      // client's host: other test files' calls (they share this isolate's fetch) meet a closed port.
      vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
        const url = new URL(input instanceof Request ? input.url : String(input));
        if (url.origin !== "http://host.test") return Promise.reject(new TypeError("connection refused"));
        return new Promise<Response>((_, reject) =>
          init?.signal?.addEventListener("abort", () => {
            aborted.push(url.pathname);
            reject(init.signal!.reason);
          }),
        );
      });
      const host = client();
      const RESULT_WAIT_MS = 2_000;
      const calls: Array<[string, () => Promise<unknown>, number]> = [
        ["cancel", () => host.cancel("approval-x"), HOST_CALL_WAIT_MS],
        ["terminate", () => host.terminate("approval-x", "no longer needed"), HOST_CALL_WAIT_MS],
        ["follow", () => host.follow("approval-x"), HOST_CALL_WAIT_MS],
        ["result", () => host.result("approval-x", RESULT_WAIT_MS), RESULT_WAIT_MS + HOST_CALL_WAIT_MS],
      ];
      const began = Date.now();
      await Promise.all(
        calls.map(async ([what, call, atLeast]) => {
          const err = await failure(call());
          const waited = Date.now() - began;
          expect([what, err.code, err.status, err.headers?.["retry-after"]]).toEqual([what, "host_unavailable", 503, "5"]);
          expect(waited, what).toBeGreaterThanOrEqual(atLeast - 50);
          expect(waited, what).toBeLessThan(atLeast + 5_000);
        }),
      );
      expect(aborted.sort()).toEqual([
        HOST_PATHS.cancel("approval-x"),
        HOST_PATHS.follow("approval-x"),
        HOST_PATHS.result("approval-x"),
        HOST_PATHS.terminate("approval-x"),
      ]);
    },
    HOST_CALL_WAIT_MS + 15_000,
  );

  it("the host's 400 invalid_request passes through as a 400", async () => {
    answer(400, "invalid_request");
    const err = await failure(client().interact("approval-x", "update", "setPriority", {}));
    expect([err.code, err.status]).toEqual(["invalid_request", 400]);
  });

  it("an outage (502/503/504 from the host or its proxy, a Cloudflare proxy's 520-524) stays 503 host_unavailable with Retry-After", async () => {
    for (const status of [502, 503, 504, 520, 521, 522, 523, 524]) {
      answer(status, "temporal_unavailable");
      const err = await failure(client().interact("approval-x", "signal", "approve", {}));
      expect([err.code, err.status]).toEqual(["host_unavailable", 503]);
      expect(Number(err.headers?.["retry-after"])).toBeGreaterThan(0);
      vi.restoreAllMocks();
    }
  });
});

describe("the host unavailable while a blocking start waits (the run was started)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  let restore: () => void;
  /** How the scripted host answers result calls, in turn; then `completed`. */
  let resultAnswers: Array<"unavailable" | "running"> = [];
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
    restore = scriptHost(async (request, path) => {
      if (path === HOST_PATHS.start) {
        return Response.json(await scriptedStart(request));
      }
      if (path.endsWith("/result")) {
        const workflowId = decodeURIComponent(path.split("/").at(-2)!);
        const runId = new URL(request.url).searchParams.get("runId") ?? crypto.randomUUID();
        const next = resultAnswers.shift();
        if (next === "unavailable")
          return Response.json({ error: { code: "temporal_unavailable", message: "restarting" } }, { status: 503 });
        const done = next === undefined;
        return Response.json({
          workflowId,
          runId,
          status: done ? "completed" : "running",
          output: done ? { greeting: "Hello, Ada!" } : null,
          error: null,
          closeTime: done ? new Date().toISOString() : null,
        });
      }
      throw new TypeError("connection refused");
    });
  });
  afterAll(() => restore());

  it("a host that comes back within the wait: the wait goes on and answers the result (not 503, which a retry would answer with a second run)", async () => {
    resultAnswers = ["unavailable", "unavailable"];
    const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "Ada" }, timeout: 20_000 }, org.key);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "completed", output: { greeting: "Hello, Ada!" } });
  });

  it("a host still unavailable when the wait runs out: 408 with the run's Location, as any wait that ran out", async () => {
    resultAnswers = Array.from({ length: 100 }, () => "unavailable" as const);
    const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "Ada" }, timeout: 2_500 }, org.key);
    expect(res.status).toBe(408);
    const body = (await res.json()) as { code: string; workflowId: string };
    expect(body.code).toBe("wait_timed_out");
    expect(res.headers.get("location")).toBe(`/workflow/${body.workflowId}/result`);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE temporal_workflow_id = ?").bind(body.workflowId).first();
    expect(rows).toEqual({ n: 1 });
  });
});
