/**
 * POST /api/v1/run/{workflow_id} at the edge, with the host unreachable: everything the edge
 * decides before a run starts. test/e2e/published-run.test.ts runs it through the real stack.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { runStream } from "../../src/run-stream-client.ts";
import { HOST_PATHS } from "../../src/shared/host-api.ts";
import {
  admin,
  call,
  createKey,
  createPromptWorkflow,
  type ErrorBody,
  postJson,
  scriptedStart,
  scriptHost,
  seedOrganization,
} from "./helpers.ts";
import { allFrames, closeEvent, push, runStartOutboxAttempt } from "./stream-helpers.ts";

const promptWorkflow = createPromptWorkflow;

const error = async (res: Response) => ((await res.json()) as ErrorBody).error;

describe("published run API: errors before a run starts", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  let workflowId: string;
  beforeAll(async () => {
    org = await seedOrganization();
    workflowId = await promptWorkflow(org.organizationId);
  });

  it("401 without a key or with a bad one (Basic is not accepted here)", async () => {
    expect((await postJson(`/api/v1/run/${workflowId}`, {})).status).toBe(401);
    expect((await postJson(`/api/v1/run/${workflowId}`, {}, "otr_abcdefgh12_ABCDEFGHIJKLMNOPQRSTUVWXYZ12")).status).toBe(401);
    const basic = await call(`/api/v1/run/${workflowId}`, { method: "POST", headers: { authorization: `Basic ${org.key}` }, body: "{}" });
    expect(basic.status).toBe(401);
  });

  it("404 for unknown, unpublished, malformed and other organizations' workflows", async () => {
    const unpublished = await promptWorkflow(org.organizationId, {}, false);
    const other = await seedOrganization();
    const foreign = await promptWorkflow(other.organizationId);
    for (const id of ["wf_doesnotexist1", unpublished, foreign, "..%2F..%2Fadmin", `wf_${"a".repeat(400)}`, "wf_%F0%9F%92%A5"]) {
      const res = await postJson(`/api/v1/run/${id}`, { audience: "a", topic: "b" }, org.key);
      expect(res.status, id).toBe(404);
      expect((await error(res)).code).toBe("workflow_not_found");
    }
  });

  it("security: a 404 quotes at most 100 characters of a long workflow id, not all of it", async () => {
    const id = `wf_${"a".repeat(5_000)}`;
    for (const res of [await postJson(`/api/v1/run/${id}`, {}, org.key), await postJson(`/api/v1/run/${id}/stream`, {}, org.key)]) {
      expect(res.status).toBe(404);
      const { message } = await error(res);
      expect(message).toContain(`"wf_${"a".repeat(97)}… (4903 more characters)"`);
      expect(message.length).toBeLessThan(200);
    }
  });

  it("security: an issue naming a long key is clipped to whole characters, never half of one (a lone surrogate)", async () => {
    // 😀 is two UTF-16 units, at the 300th and 301st: a clip at 300 left half of it in the path.
    const key = `${"k".repeat(299)}😀${"z".repeat(50)}`;
    const res = await postJson(`/api/v1/run/${workflowId}`, { audience: "a", topic: "b", [key]: "x" }, org.key);
    expect(res.status).toBe(400);
    const body = await error(res);
    const issue = body.issues!.find((i) => i.path.startsWith("kkk"))!;
    expect(issue.path.isWellFormed(), JSON.stringify(issue.path.slice(-5))).toBe(true);
    expect(body.message.isWellFormed()).toBe(true);
  });

  it("400 naming every missing and unknown variable", async () => {
    const res = await postJson(`/api/v1/run/${workflowId}`, { topic: "x", colour: "red", size: 3 }, org.key);
    expect(res.status).toBe(400);
    const body = await error(res);
    expect(body.code).toBe("invalid_input");
    expect(body.issues!.map((i) => i.path).sort()).toEqual(["audience", "colour", "size"]);
    expect(body.message).toMatch(/audience/);
    expect(body.message).toMatch(/colour/);
  });

  it("400 for a body that is not an object, or not JSON, and for nested values", async () => {
    expect((await error(await postJson(`/api/v1/run/${workflowId}`, ["a"], org.key))).code).toBe("invalid_input");
    expect((await error(await postJson(`/api/v1/run/${workflowId}`, "{oops", org.key))).code).toBe("invalid_json");
    // JSON null is a body that is not an object, not a missing body (which reads as {}).
    const nullBody = await error(await postJson(`/api/v1/run/${workflowId}`, "null", org.key));
    expect([nullBody.code, nullBody.issues]).toEqual(["invalid_input", [{ path: "(body)", message: "expected a JSON object" }]]);
    const nested = await error(await postJson(`/api/v1/run/${workflowId}`, { audience: { a: 1 }, topic: "t" }, org.key));
    expect(nested.issues).toEqual([{ path: "audience", message: "must be a string, number or boolean" }]);
  });

  it("security: a body of white space JSON does not have (no-break, ideographic, line separator) is 400 invalid_json, not a missing body that starts the run", async () => {
    // No variables: a missing body ({}) starts a run.
    const noVariables = await promptWorkflow(org.organizationId, { template: "Say hello." });
    const runs = () => env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(org.organizationId).first("n");
    const before = await runs();
    for (const body of ["\u00a0", " \u3000 ", "\u2028", "\u200b", "\ufeff\u00a0"]) {
      for (const path of [`/api/v1/run/${noVariables}`, `/api/v1/run/${noVariables}/stream`]) {
        const res = await postJson(path, body, org.key);
        expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(400);
        expect((await error(res)).code).toBe("invalid_json");
      }
    }
    expect(await runs()).toBe(before);
  });

  it("no body reads as {} on both routes: 400 naming the missing variables, and a template without variables starts (not a 503 from the stream route)", async () => {
    for (const path of [`/api/v1/run/${workflowId}`, `/api/v1/run/${workflowId}/stream`]) {
      for (const body of ["", "  "]) {
        const res = await postJson(path, body, org.key);
        expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(400);
        const err = await error(res);
        expect([err.code, err.issues!.map((i) => i.path).sort()]).toEqual(["invalid_input", ["audience", "topic"]]);
      }
    }
    // Its own organization: the runs it starts are not the ones later tests count.
    const other = await seedOrganization();
    const noVariables = await promptWorkflow(other.organizationId, { template: "Say hello." });
    for (const path of [`/api/v1/run/${noVariables}`, `/api/v1/run/${noVariables}/stream`]) {
      const res = await postJson(path, "", other.key);
      expect(res.status, path).toBe(202);
      expect(((await res.json()) as { status: string }).status).toBe("scheduled");
    }
  });

  it("413 for a body over 1 MiB", async () => {
    const res = await postJson(`/api/v1/run/${workflowId}`, { audience: "x".repeat(1024 * 1024 + 10), topic: "t" }, org.key);
    expect(res.status).toBe(413);
  });

  it("202 with x-run-id when the host is down: the run is accepted (row scheduled) and its DO retries the start", async () => {
    const res = await postJson(`/api/v1/run/${workflowId}`, { audience: "a", topic: "b" }, org.key, { origin: "https://app.example" });
    expect(res.status).toBe(202);
    const runId = res.headers.get("x-run-id");
    expect(await res.json()).toEqual({ workflowId: runId, status: "scheduled" });
    // A browser page on a CORS_ORIGINS origin may read it.
    expect(
      res.headers
        .get("access-control-expose-headers")
        ?.toLowerCase()
        .split(/\s*,\s*/),
    ).toContain("x-run-id");
    const rows = await env.DB.prepare("SELECT status FROM runs WHERE organization_id = ?").bind(org.organizationId).all();
    expect(rows.results).toEqual([{ status: "scheduled" }]);
  });

  it("carries rate-limit headers on errors too; 429 with Retry-After past the key's limit", async () => {
    const { key, keyId } = await createKey(org.organizationId);
    await env.DB.prepare("UPDATE api_keys SET rate_limit_per_minute = 2 WHERE id = ?").bind(keyId).run();
    const first = await postJson(`/api/v1/run/${workflowId}`, {}, key);
    expect(first.status).toBe(400);
    expect(first.headers.get("x-ratelimit-limit")).toBe("2");
    expect(first.headers.get("x-ratelimit-remaining")).toBe("1");
    expect(first.headers.get("x-ratelimit-reset")).toBeTruthy();
    await postJson(`/api/v1/run/${workflowId}`, {}, key);
    const limited = await postJson(`/api/v1/run/${workflowId}`, {}, key);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await error(limited)).code).toBe("rate_limited");
  });
});

describe("published run API: Idempotency-Key replays", () => {
  it("replay the first run after the workflow's variables changed and after it was unpublished", async () => {
    const org = await seedOrganization();
    const workflowId = await promptWorkflow(org.organizationId);
    const body = { audience: "a new engineer", topic: "durable execution" };
    const idem = `key-${crypto.randomUUID()}`;
    // Accepted while the host is missing here: 202 with the run's id.
    const first = await postJson(`/api/v1/run/${workflowId}`, body, org.key, { "idempotency-key": idem });
    expect(first.status).toBe(202);
    const runId = first.headers.get("x-run-id");
    expect(runId).toMatch(new RegExp(`^${workflowId}-`));
    // The template now takes other variables: a new start with this body would be 400.
    expect((await admin("PATCH", `/admin/v1/workflows/${workflowId}`, { template: "Summarize {{text}}." })).ok).toBe(true);
    expect((await postJson(`/api/v1/run/${workflowId}`, body, org.key)).status).toBe(400);
    const changed = await postJson(`/api/v1/run/${workflowId}`, body, org.key, { "idempotency-key": idem });
    expect(changed.status).toBe(202);
    expect(changed.headers.get("idempotent-replayed")).toBe("true");
    expect(changed.headers.get("x-run-id")).toBe(runId);
    // Unpublished: a new start is 404, the replay is still the first run.
    expect((await admin("POST", `/admin/v1/workflows/${workflowId}/unpublish`)).ok).toBe(true);
    expect((await postJson(`/api/v1/run/${workflowId}`, { text: "x" }, org.key)).status).toBe(404);
    const unpublished = await postJson(`/api/v1/run/${workflowId}`, body, org.key, { "idempotency-key": idem });
    expect(unpublished.status).toBe(202);
    expect(unpublished.headers.get("idempotent-replayed")).toBe("true");
    expect(unpublished.headers.get("x-run-id")).toBe(runId);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(org.organizationId).first("n")).toBe(1);
  });
});

/**
 * A scripted host that starts runs (each named after its accept id: scriptedStart), noting each
 * workflow's run id, and answers result calls with `result` when given; anything else finds no host.
 */
function scriptPromptHost(result?: (workflowId: string, runId: string) => unknown) {
  const runIds = new Map<string, string>();
  const restore = scriptHost(async (request, path) => {
    if (path === HOST_PATHS.start) {
      const started = await scriptedStart(request);
      runIds.set(started.workflowId, started.runId);
      return Response.json(started);
    }
    const asked = /^\/v1\/runs\/([^/]+)\/result$/.exec(path);
    if (!asked || !result) throw new TypeError("connection refused");
    const workflowId = decodeURIComponent(asked[1]!);
    return Response.json(result(workflowId, runIds.get(workflowId)!));
  });
  return { runIds, restore };
}

describe("published run API: Idempotency-Key replays after the workflow was edited", () => {
  it("a replay answers as the first request was answered: citations as the run's start had webSearch, whatever it is now", async () => {
    const org = await seedOrganization();
    const body = { audience: "a", topic: "b" };
    const { restore } = scriptPromptHost((workflowId, runId) => ({
      workflowId,
      runId,
      status: "completed",
      output: { text: "the answer", citations: ["https://a.example/"] },
      error: null,
      closeTime: new Date().toISOString(),
    }));
    try {
      for (const [webSearch, answer] of [
        [true, { success: true, result: "the answer", citations: ["https://a.example/"] }],
        [false, { success: true, result: "the answer" }],
      ] as const) {
        const workflowId = await createPromptWorkflow(org.organizationId, { webSearch });
        const idem = `key-${crypto.randomUUID()}`;
        const first = await postJson(`/api/v1/run/${workflowId}`, body, org.key, { "idempotency-key": idem });
        expect(first.status).toBe(200);
        expect(await first.json()).toEqual(answer);
        expect((await admin("PATCH", `/admin/v1/workflows/${workflowId}`, { webSearch: !webSearch })).ok).toBe(true);
        const replay = await postJson(`/api/v1/run/${workflowId}`, body, org.key, { "idempotency-key": idem });
        expect(replay.headers.get("idempotent-replayed")).toBe("true");
        expect(await replay.json(), `webSearch ${webSearch} at the start`).toEqual(answer);
      }
    } finally {
      restore();
    }
  });
});

describe("published run API: a completed run whose output is not a prompt's answer", () => {
  it("is 502 host_error naming the problem on both routes, not a 500 internal_error, a 200 without a text result, or a stream lost", async () => {
    const org = await seedOrganization();
    const workflowId = await createPromptWorkflow(org.organizationId, { webSearch: true });
    const body = { audience: "a", topic: "b" };
    // What a host of another version (or one that lost the payload) could report for run_prompt.
    for (const output of [null, { text: 5, citations: [] }, "just text", { citations: [] }]) {
      const { restore } = scriptPromptHost((id, runId) => ({
        workflowId: id,
        runId,
        status: "completed",
        output,
        error: null,
        closeTime: new Date().toISOString(),
      }));
      try {
        const res = await postJson(`/api/v1/run/${workflowId}`, body, org.key);
        expect(res.status, JSON.stringify(output)).toBe(502);
        expect(res.headers.get("x-run-id")).toMatch(new RegExp(`^${workflowId}-`));
        const err = await error(res);
        expect([err.code, err.message]).toEqual(["host_error", expect.stringContaining("not a prompt's answer")]);
      } finally {
        restore();
      }
    }
    const { runIds, restore } = scriptPromptHost();
    try {
      const res = await postJson(`/api/v1/run/${workflowId}/stream`, body, org.key);
      expect(res.status).toBe(200);
      const runWorkflowId = res.headers.get("x-run-id")!;
      const runId = runIds.get(runWorkflowId)!;
      await push(runWorkflowId, [
        closeEvent(runId, 5),
        {
          sourceKey: `run:${runId}:finished`,
          type: "run.finished",
          at: new Date().toISOString(),
          data: { runId, status: "completed", output: null, error: null },
        },
      ]);
      const frames = (await allFrames(res)).filter((f) => f.event !== undefined);
      expect(frames.map((f) => [f.event, JSON.parse(f.data).error.code])).toEqual([["error", "host_error"]]);
    } finally {
      restore();
    }
  });
});

describe("published run API: the stream when the model's step is retried", () => {
  it("a later attempt's text comes after `restart` {attempt}, a late entry of the earlier attempt is left out, and the text after the last restart is the result", async () => {
    const org = await seedOrganization();
    const workflowId = await createPromptWorkflow(org.organizationId);
    const { runIds, restore } = scriptPromptHost();
    try {
      const res = await postJson(`/api/v1/run/${workflowId}/stream`, { audience: "a", topic: "b" }, org.key);
      expect(res.status).toBe(200);
      const runWorkflowId = res.headers.get("x-run-id")!;
      const runId = runIds.get(runWorkflowId)!;
      const at = () => new Date().toISOString();
      const step = (attempt: number) => ({ runId, activityId: "1", stepName: "answerPrompt", attempt });
      const text = (attempt: number, n: number, delta: string) => ({
        sourceKey: `text:${runId}:1:${attempt}:${n}`,
        type: "text",
        at: at(),
        data: { ...step(attempt), delta },
      });
      await push(runWorkflowId, [
        { sourceKey: `thinking:${runId}:1:1:1`, type: "thinking", at: at(), data: { ...step(1), text: "hmm" } },
        text(1, 1, "Partial ans"),
        text(2, 1, "Full "),
        text(1, 2, "wer, late"),
        text(2, 2, "answer"),
        closeEvent(runId, 5),
        {
          sourceKey: `run:${runId}:finished`,
          type: "run.finished",
          at: at(),
          data: { runId, status: "completed", output: { text: "Full answer", citations: [] }, error: null },
        },
      ]);
      const frames = (await allFrames(res)).filter((f) => f.event !== undefined);
      expect(frames.map((f) => [f.event, JSON.parse(f.data)])).toEqual([
        ["thinking", { text: "hmm" }],
        ["text", { delta: "Partial ans" }],
        ["restart", { attempt: 2 }],
        ["text", { delta: "Full " }],
        ["text", { delta: "answer" }],
        ["result", { success: true, result: "Full answer" }],
      ]);
    } finally {
      restore();
    }
  });
});

describe("published run API: a run its outbox could not start", () => {
  it("is replayed as the failed run it is (500 run_failed, with its id), on both routes, not as 202 scheduled", async () => {
    const org = await seedOrganization();
    const workflowId = await promptWorkflow(org.organizationId);
    const body = { audience: "a new engineer", topic: "durable execution" };
    for (const path of [`/api/v1/run/${workflowId}`, `/api/v1/run/${workflowId}/stream`]) {
      const idem = `key-${crypto.randomUUID()}`;
      const first = await postJson(path, body, org.key, { "idempotency-key": idem });
      expect(first.status, path).toBe(202);
      const runId = first.headers.get("x-run-id")!;
      // The host comes back and refuses the start for good (its own error body): the outbox records the run failed.
      const restore = scriptHost(() =>
        Response.json({ error: { code: "workflow_not_found", message: "gone from the host" } }, { status: 404 }),
      );
      try {
        await runStartOutboxAttempt(runStream(env, runId));
      } finally {
        restore();
      }
      expect(await env.DB.prepare("SELECT status FROM runs WHERE temporal_workflow_id = ?").bind(runId).first("status")).toBe("failed");
      const replay = await postJson(path, body, org.key, { "idempotency-key": idem });
      expect(replay.status, path).toBe(500);
      expect(replay.headers.get("idempotent-replayed")).toBe("true");
      expect(replay.headers.get("x-run-id")).toBe(runId);
      const refusal = await error(replay);
      expect(refusal.code).toBe("run_failed");
      expect(refusal.message).toContain("gone from the host");
    }
  });
});

describe("published run API: hostile input (security)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  let workflowId: string;
  beforeAll(async () => {
    org = await seedOrganization();
    workflowId = await promptWorkflow(org.organizationId);
  });

  it("a template using {{__proto__}}, {{constructor}} or {{prototype}} is refused when saved (400 naming it)", async () => {
    for (const name of ["__proto__", "constructor", "prototype"]) {
      const created = await admin("POST", `/admin/v1/organizations/${org.organizationId}/workflows`, {
        name: `wf ${crypto.randomUUID()}`,
        template: `Tell {{audience}} about {{ ${name} }}.`,
        model: "local/writer",
      });
      expect(created.status).toBe(400);
      const body = await error(created);
      expect(body.code).toBe("invalid_request");
      expect(body.message).toContain(`${name} is a reserved name`);
      const updated = await admin("PATCH", `/admin/v1/workflows/${workflowId}`, { template: `{{${name}}}` });
      expect(updated.status).toBe(400);
    }
  });

  it("__proto__, constructor and prototype as body keys → 400 naming them (never silently dropped)", async () => {
    for (const name of ["__proto__", "constructor", "prototype"]) {
      const res = await postJson(`/api/v1/run/${workflowId}`, `{"audience":"a","topic":"b","${name}":"x"}`, org.key);
      expect(res.status).toBe(400);
      const body = await error(res);
      expect(body.code).toBe("invalid_input");
      expect(body.issues).toEqual([{ path: name, message: expect.stringContaining("reserved") }]);
    }
  });

  it("a body of 80,000 unknown keys → 400 invalid_input listing 20 of them and counting the rest, in a few KB", async () => {
    // 60 variables of 40 characters: each unknown key's issue used to repeat all of them (hundreds of MB in all).
    const names = Array.from({ length: 60 }, (_, i) => `variable_${String(i).padStart(2, "0")}_${"v".repeat(27)}`);
    const wide = await promptWorkflow(org.organizationId, { template: names.map((n) => `{{${n}}}`).join(" ") });
    const body: Record<string, string> = {};
    for (let i = 0; i < 80_000; i++) body[`k${i}`] = "";
    const res = await postJson(`/api/v1/run/${wide}`, body, org.key);
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text.length).toBeLessThan(64 * 1024);
    const { error: e } = JSON.parse(text) as ErrorBody;
    expect(e.code).toBe("invalid_input");
    expect(e.issues).toHaveLength(21);
    expect(e.issues!.at(-1)).toEqual({ path: "(more)", message: `${60 + 80_000 - 20} more issues not listed` });
    expect(e.message).toMatch(/and 80040 more$/);
  });

  it("deep JSON → 400 json_too_deep; invalid UTF-8 → 400 invalid_json, on both routes", async () => {
    for (const path of [`/api/v1/run/${workflowId}`, `/api/v1/run/${workflowId}/stream`]) {
      const deep = await postJson(path, `{"audience":${"[".repeat(4_500)}${"]".repeat(4_500)},"topic":"t"}`, org.key);
      expect([deep.status, (await error(deep)).code]).toEqual([400, "json_too_deep"]);
      const bytes = new Uint8Array([
        ...new TextEncoder().encode('{"audience":"'),
        0xc0,
        0xaf,
        ...new TextEncoder().encode('","topic":"t"}'),
      ]);
      const bad = await call(path, {
        method: "POST",
        headers: { authorization: `Bearer ${org.key}`, "content-type": "application/json" },
        body: bytes,
      });
      expect([bad.status, (await error(bad)).code]).toEqual([400, "invalid_json"]);
    }
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?")
      .bind(org.organizationId)
      .first<{ n: number }>();
    expect(rows!.n).toBe(0);
  });

  it("values that would make the rendered prompt over 4 MiB → 400 invalid_input saying how big, on both routes; nothing started", async () => {
    // A template that uses one variable 5,000 times: 1,000 bytes of it make a 5 MB prompt.
    const repeating = await promptWorkflow(org.organizationId, { template: "{{v}}".repeat(5_000) });
    const value = "x".repeat(1_000);
    for (const path of [`/api/v1/run/${repeating}`, `/api/v1/run/${repeating}/stream`]) {
      const res = await postJson(path, { v: value }, org.key);
      expect(res.status, path).toBe(400);
      const body = await error(res);
      expect(body.code).toBe("invalid_input");
      expect(body.message).toContain("5000000 bytes");
    }
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?")
      .bind(org.organizationId)
      .first<{ n: number }>();
    expect(rows!.n).toBe(0);
    // Under the limit (4,000,000 bytes) the run is accepted: 202 here, where the host is down.
    expect((await postJson(`/api/v1/run/${repeating}`, { v: "x".repeat(800) }, org.key)).status).toBe(202);
  });
});

describe("published run API: credits at the door", () => {
  it("402 when the organization's available credits cannot cover the run's hold; nothing is held", async () => {
    const org = await seedOrganization();
    const workflowId = await promptWorkflow(org.organizationId);
    await admin("POST", `/admin/v1/organizations/${org.organizationId}/credits`, { amount: 10 });
    const res = await postJson(`/api/v1/run/${workflowId}`, { audience: "you", topic: "credits" }, org.key);
    expect(res.status).toBe(402);
    const body = await error(res);
    expect(body.code).toBe("insufficient_credits");
    expect(body.message).toMatch(/has 10/);
    const row = await env.DB.prepare("SELECT credit_balance, credits_reserved FROM organizations WHERE id = ?")
      .bind(org.organizationId)
      .first();
    expect(row).toEqual({ credit_balance: 10, credits_reserved: 0 });
  });

  it("a run accepted while the host is down holds its credits until it ends", async () => {
    const org = await seedOrganization();
    const workflowId = await promptWorkflow(org.organizationId);
    await admin("POST", `/admin/v1/organizations/${org.organizationId}/credits`, { amount: 100_000 });
    expect((await postJson(`/api/v1/run/${workflowId}`, { audience: "a", topic: "b" }, org.key)).status).toBe(202);
    const row = await env.DB.prepare(
      "SELECT o.credits_reserved AS reserved, r.credit_hold AS hold FROM organizations o JOIN runs r ON r.organization_id = o.id WHERE o.id = ?",
    )
      .bind(org.organizationId)
      .first<{ reserved: number; hold: number }>();
    expect(row!.hold).toBeGreaterThan(0);
    expect(row!.reserved).toBe(row!.hold);
  });

  it("the Workflow API's code runs are held against credits too", async () => {
    const org = await seedOrganization();
    await admin("POST", `/admin/v1/organizations/${org.organizationId}/credits`, { amount: 5 });
    const { seedCatalog } = await import("./helpers.ts");
    await seedCatalog();
    const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "Ada" } }, org.key);
    expect(res.status).toBe(402);
  });
});
