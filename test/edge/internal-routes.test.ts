import { createExecutionContext, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import type { RunStream } from "../../durable-objects/run-stream.ts";
import { catalogEntries } from "../../host/catalog.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { MAX_SIGNED_BODY_BYTES } from "../../src/shared/capped-body.ts";
import app from "../../src/index.ts";
import { MIN_SECRET_LENGTH, signRequest } from "../../src/shared/signing.ts";
import { endlessBody, stalledBody } from "../support/endless-bodies.ts";
import {
  MAX_CATALOG_DESCRIPTION_CHARS,
  MAX_CATALOG_HANDLERS,
  MAX_CATALOG_SCHEMA_BYTES,
  MAX_CATALOG_WORKFLOWS,
} from "../../src/shared/host-api.ts";
import {
  call,
  type ErrorBody,
  type OutputErrorBody,
  postJson,
  seedCatalog,
  seedOrganization,
  signedPost,
  TEST_HOST_SECRET,
} from "./helpers.ts";

const WORKFLOW_ID = "hello-11111111-2222-4333-8444-555555555555";

async function insertRun(organizationId: string, workflowId: string) {
  const wf = await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{ id: string }>();
  await env.DB.prepare(
    "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES (?, ?, ?, 'hello', ?, 'scheduled', '{}')",
  )
    .bind(crypto.randomUUID(), organizationId, wf!.id, workflowId)
    .run();
}

const runRow = (workflowId: string) =>
  env.DB.prepare("SELECT status, output, error, temporal_run_id FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{
    status: string;
    output: string | null;
    error: string | null;
    temporal_run_id: string | null;
  }>();

const finished = (status: string, output: unknown, error: string | null) => ({
  sourceKey: "run:r1:finished",
  type: "run.finished",
  at: new Date().toISOString(),
  data: { runId: "r1", status, output, error },
});

describe("internal routes (host → edge)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
    await insertRun(org.organizationId, WORKFLOW_ID);
  });

  it("refuses unsigned, wrongly signed and stale requests with 401", async () => {
    const unsigned = await call("/internal/catalog", { method: "POST", body: "{}" });
    expect(unsigned.status).toBe(401);
    expect(((await unsigned.json()) as ErrorBody).error.code).toBe("unauthorized");
    expect((await signedPost("/internal/catalog", { workflows: [] }, "wrong-secret")).status).toBe(401);
    const tenMinutesAgo = Date.now() - 10 * 60_000;
    expect((await signedPost("/internal/catalog", { workflows: [] }, undefined, tenMinutesAgo)).status).toBe(401);
  });

  it("refuses a request without a fresh signature before reading its body (a body that never ends is not waited for)", async () => {
    const stale = await signRequest(TEST_HOST_SECRET, "POST", "/internal/run-events", "{}", Date.now() - 10 * 60_000);
    for (const headers of [{}, stale]) {
      const res = await call("/internal/run-events", {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: stalledBody(),
      });
      expect(res.status).toBe(401);
      expect(((await res.json()) as ErrorBody).error.message).toMatch(/missing signature|stale signature/);
    }
  }, 5_000);

  it("refuses a fresh signature made without the secret before reading its body (no 32 MiB read and hashed for a forger)", async () => {
    const forged = await signRequest("not-the-host-secret", "POST", "/internal/run-events", "{}");
    const res = await call("/internal/run-events", {
      method: "POST",
      headers: { ...forged, "content-type": "application/json" },
      body: stalledBody(),
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrorBody).error.message).toMatch(/bad signature/);
  }, 5_000);

  it("refuses a body over MAX_SIGNED_BODY_BYTES with 413, reading no more of it than that", { timeout: 20_000 }, async () => {
    const headers = await signRequest(TEST_HOST_SECRET, "POST", "/internal/run-events", "{}");
    // Declared (Content-Length): refused before a byte is read.
    const declared = await call("/internal/run-events", {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: "x".repeat(MAX_SIGNED_BODY_BYTES + 1),
    });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as ErrorBody).error.code).toBe("payload_too_large");
    // Streamed without a length, and never ending: read up to the limit, then refused.
    const endless = endlessBody();
    const streamed = await call("/internal/run-events", {
      method: "POST",
      headers: { ...(await signRequest(TEST_HOST_SECRET, "POST", "/internal/run-events", "{}")), "content-type": "application/json" },
      body: endless.body,
    });
    expect(streamed.status).toBe(413);
    expect(((await streamed.json()) as ErrorBody).error.code).toBe("payload_too_large");
    expect(endless.pulled()).toBeLessThan(MAX_SIGNED_BODY_BYTES * 2);
  });

  it("refuses a replayed request: the same signed request works once", async () => {
    const text = JSON.stringify({ workflows: catalogEntries() });
    const headers = { ...(await signRequest(TEST_HOST_SECRET, "POST", "/internal/catalog", text)), "content-type": "application/json" };
    const send = () => call("/internal/catalog", { method: "POST", headers, body: text });
    expect((await send()).status).toBe(200);
    const replay = await send();
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as ErrorBody).error.message).toMatch(/replayed/);
  });

  it("refuses a replayed run-event push (claimed by the run's RunStream)", async () => {
    const workflowId = `hello-${crypto.randomUUID()}`;
    await insertRun(org.organizationId, workflowId);
    const path = `/internal/runs/${workflowId}/events`;
    const text = JSON.stringify({ events: [finished("completed", { ok: 1 }, null)] });
    const headers = { ...(await signRequest(TEST_HOST_SECRET, "POST", path, text)), "content-type": "application/json" };
    const send = () => call(path, { method: "POST", headers, body: text });
    expect((await send()).status).toBe(200);
    const replay = await send();
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as ErrorBody).error.message).toMatch(/replayed/);
    // A new signature for the same events is a retry, not a replay: accepted, as a duplicate.
    expect(await (await signedPost(path, JSON.parse(text))).json()).toEqual({ accepted: 0, duplicates: 1 });
  });

  it("accepts a request signed with the secret being rotated out", async () => {
    const res = await signedPost(
      "/internal/catalog",
      { workflows: catalogEntries() },
      "edge-test-old-host-shared-secret-long-enough-for-hmac",
    );
    expect(res.status).toBe(200);
  });

  it("security: an edge whose HOST_SHARED_SECRET holds a value shorter than MIN_SECRET_LENGTH (or none) lets nothing through: 500 internal_error, logged without the secret", async () => {
    const long = `edge-test-long-enough-${"l".repeat(MIN_SECRET_LENGTH)}`;
    const short = "s".repeat(MIN_SECRET_LENGTH - 1);
    /** A catalog publish signed with `signer`, to an edge whose HOST_SHARED_SECRET is `setting`. */
    const publish = async (setting: string, signer: string) => {
      const text = JSON.stringify({ workflows: catalogEntries() });
      const headers = { ...(await signRequest(signer, "POST", "/internal/catalog", text)), "content-type": "application/json" };
      return app.fetch(
        new Request("http://edge.test/internal/catalog", { method: "POST", headers, body: text }),
        { ...env, HOST_SHARED_SECRET: setting } as Env,
        createExecutionContext(),
      );
    };
    // Exactly MIN_SECRET_LENGTH is enough.
    expect((await publish("e".repeat(MIN_SECRET_LENGTH), "e".repeat(MIN_SECRET_LENGTH))).status).toBe(200);
    const logged = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      const cases: Array<[setting: string, signer: string]> = [
        ["x", "x"],
        [short, short],
        // A rotation's list is refused whole while one of its values is short: that value would still open the door.
        [`${long},${short}`, short],
        [`${long},${short}`, long],
        ["", short],
      ];
      for (const [setting, signer] of cases) {
        const res = await publish(setting, signer);
        expect(res.status, `a setting of ${setting.length} characters, signed with ${signer.length}`).toBe(500);
        expect(((await res.json()) as ErrorBody).error.code).toBe("internal_error");
      }
      const lines = logged.mock.calls.map((args) => args.join(" "));
      expect(lines).toHaveLength(5);
      for (const line of lines) {
        expect(line).toMatch(/HOST_SHARED_SECRET/);
        expect(line).not.toContain(short);
      }
      expect(lines[1]).toContain(`${MIN_SECRET_LENGTH} characters`);
    } finally {
      logged.mockRestore();
    }
  });

  it("publishing the catalog replaces the code workflows and unpublishes dropped ones", async () => {
    const [first] = catalogEntries();
    const res = await signedPost("/internal/catalog", { workflows: [first] });
    expect(await res.json()).toEqual({ published: 1 });
    const published = await env.DB.prepare("SELECT name FROM workflows WHERE organization_id IS NULL AND published = 1").all<{
      name: string;
    }>();
    expect(published.results.map((r) => r.name)).toEqual([first!.name]);
    await seedCatalog();
  });

  it("run events update the run row through its RunStream, once per source key", async () => {
    const started = { sourceKey: "run:r1:started", type: "run.started", at: new Date().toISOString(), data: { runId: "r1" } };
    const first = await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [started] });
    expect(await first.json()).toEqual({ accepted: 1, duplicates: 0 });
    expect((await runRow(WORKFLOW_ID))?.status).toBe("running");

    const done = finished("completed", { greeting: "Hello, Ada!" }, null);
    expect(await (await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [done, started] })).json()).toEqual({
      accepted: 1,
      duplicates: 1,
    });
    const row = await runRow(WORKFLOW_ID);
    expect(row?.status).toBe("completed");
    expect(JSON.parse(row!.output!)).toEqual({ greeting: "Hello, Ada!" });

    // A redelivered finish with other content is a duplicate: it changes nothing.
    const replay = finished("failed", null, "should not appear");
    expect(await (await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [replay] })).json()).toEqual({
      accepted: 0,
      duplicates: 1,
    });
    expect((await runRow(WORKFLOW_ID))?.status).toBe("completed");

    const log = await runInDurableObject(runStream(env, WORKFLOW_ID), (instance: RunStream) => instance.events());
    expect(log.map((e) => e.sourceKey)).toEqual(["run:r1:started", "run:r1:finished"]);
  });

  it("attributes add up into the run row's cost and token totals, once each", async () => {
    const attribute = {
      sourceKey: "attribute:r1:3:1:1",
      type: "attribute",
      at: new Date().toISOString(),
      data: {
        runId: "r1",
        attribute: {
          type: "llm:usage",
          modelId: "anthropic/claude-3-5-sonnet",
          total: 0.0084,
          tokensUsed: 1200,
          usage: [
            { type: "input", ppm: 3, amount: 800, total: 0.0024 },
            { type: "output", ppm: 15, amount: 400, total: 0.006 },
          ],
        },
      },
    };
    await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [attribute] });
    await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [attribute] }); // redelivered
    const totals = await env.DB.prepare(
      "SELECT cost_total, tokens_input, tokens_output, tokens_total FROM runs WHERE temporal_workflow_id = ?",
    )
      .bind(WORKFLOW_ID)
      .first();
    expect(totals).toEqual({ cost_total: 0.0084, tokens_input: 800, tokens_output: 400, tokens_total: 1200 });
  });

  it("a late run.started does not move a finished run back to running", async () => {
    const late = { sourceKey: "run:r1:started-again", type: "run.started", at: new Date().toISOString(), data: { runId: "r1" } };
    await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [late] });
    expect((await runRow(WORKFLOW_ID))?.status).toBe("completed");
  });

  it("rejects malformed event batches with 400", async () => {
    const res = await signedPost(`/internal/runs/${WORKFLOW_ID}/events`, { events: [{ type: "run.finished" }] });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe("invalid_request");
  });

  it("a push carrying caller data at the callers' depth limit inside its envelope is accepted; a pathological one is 400 json_too_deep", async () => {
    const workflowId = "hello-21111111-2222-4333-8444-555555555555";
    await insertRun(org.organizationId, workflowId);
    const nested = (depth: number): unknown => (depth === 0 ? "x" : [nested(depth - 1)]);
    // A workflow input 62 levels deep (the most a 64-deep start body holds) inside a history event's payloads.
    const deepInput = {
      sourceKey: "history:r9:1",
      type: "history",
      at: new Date().toISOString(),
      data: {
        runId: "r9",
        event: {
          eventId: "1",
          eventTime: null,
          eventType: "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
          attributes: {},
          payloads: { input: [nested(62)] },
        },
      },
    };
    expect((await signedPost(`/internal/runs/${workflowId}/events`, { events: [deepInput] })).status).toBe(200);
    const text = `{"events":[{"sourceKey":"s","type":"attribute","at":"now","data":{"x":${"[".repeat(2_000)}${"]".repeat(2_000)}}}]}`;
    const headers = await signRequest(TEST_HOST_SECRET, "POST", `/internal/runs/${workflowId}/events`, text);
    const res = await call(`/internal/runs/${workflowId}/events`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: text,
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe("json_too_deep");
  });
});

describe("catalog publish (host → edge): a catalog the edge cannot serve is refused whole", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  const catalogRows = async () =>
    (
      await env.DB.prepare(
        "SELECT id, name, description, input_schema, output_schema, handlers, published, updated_at FROM workflows WHERE organization_id IS NULL ORDER BY name",
      ).all()
    ).results;
  const hello = () => catalogEntries().find((e) => e.name === "hello")!;

  /** Publishes the host's catalog plus `extra`; expects 400 invalid_request naming `path`, and the catalog untouched. */
  async function expectRefused(extra: Array<Record<string, unknown>>, path: string, message?: RegExp) {
    const before = await catalogRows();
    const res = await signedPost("/internal/catalog", { workflows: [...catalogEntries(), ...extra] });
    const body = (await res.json()) as ErrorBody;
    expect([res.status, body.error?.code], JSON.stringify(body).slice(0, 500)).toEqual([400, "invalid_request"]);
    expect(
      body.error.issues?.map((i) => i.path),
      JSON.stringify(body).slice(0, 500),
    ).toContain(path);
    if (message) expect(body.error.issues?.find((i) => i.path === path)?.message).toMatch(message);
    expect(await catalogRows()).toEqual(before);
  }

  it("security: a workflow named twice is 400 naming the second (it silently replaced the first, and `published` counted both)", async () => {
    const n = catalogEntries().length;
    await expectRefused([{ ...hello(), description: "a second hello" }], `workflows.${n}.name`, /twice|more than once/);
  });

  it("security: names outside the catalog's pattern (`__proto__`, upper case, control, bidi or invisible characters, any non-ASCII in NFC or not, past 64) are 400", async () => {
    // ASCII only: stricter than the name rule of tenants' names (src/shared/names.ts), so the catalog never holds a non-NFC or bidi name.
    const n = catalogEntries().length;
    for (const name of ["__proto__", "Hello", "hel\u0000lo", "hel\u200blo", "hel\u202elo", "cafe\u0301", "caf\u00e9", "h".repeat(65), ""])
      await expectRefused([{ ...hello(), name }], `workflows.${n}.name`);
  });

  it("security: a handler name the interaction routes could never call (not [A-Za-z][A-Za-z0-9_]{0,63}) is 400", async () => {
    const n = catalogEntries().length;
    for (const bad of ["", "has space", "a/b", "x".repeat(65), "\u0000"])
      await expectRefused(
        [{ ...hello(), name: "with_handler", handlers: { signals: [bad], queries: [], updates: [] } }],
        `workflows.${n}.handlers.signals.0`,
      );
  });

  it("security: past the catalog's limits (workflows per publish, schema bytes, description, handlers) is 400 naming the field; nothing is written", async () => {
    const n = catalogEntries().length;
    const many = Array.from({ length: MAX_CATALOG_WORKFLOWS + 1 - n }, (_, i) => ({ ...hello(), name: `w${i}` }));
    await expectRefused(many, "workflows", new RegExp(String(MAX_CATALOG_WORKFLOWS)));
    const bigSchema = { type: "object", description: "x".repeat(MAX_CATALOG_SCHEMA_BYTES) };
    await expectRefused([{ ...hello(), name: "big_in", inputSchema: bigSchema }], `workflows.${n}.inputSchema`);
    await expectRefused([{ ...hello(), name: "big_out", outputSchema: bigSchema }], `workflows.${n}.outputSchema`);
    await expectRefused(
      [{ ...hello(), name: "long_text", description: "d".repeat(MAX_CATALOG_DESCRIPTION_CHARS + 1) }],
      `workflows.${n}.description`,
    );
    const handlers = { signals: Array.from({ length: MAX_CATALOG_HANDLERS + 1 }, (_, i) => `s${i}`), queries: [], updates: [] };
    await expectRefused([{ ...hello(), name: "many_handlers", handlers }], `workflows.${n}.handlers.signals`);
  });

  it("security: an input schema the validator cannot run is refused at publish (it was taken, and every start of that workflow was a 500)", async () => {
    const n = catalogEntries().length;
    let deep: unknown = { type: "string" };
    for (let i = 0; i < 1000; i++) deep = { not: deep };
    const fanOut: Record<string, unknown> = { d30: { type: "string" } };
    for (let i = 0; i < 30; i++) fanOut[`d${i}`] = { anyOf: [{ $ref: `#/$defs/d${i + 1}` }, { $ref: `#/$defs/d${i + 1}` }] };
    const refChain: Record<string, unknown> = {};
    for (let i = 0; i < 300; i++) refChain[`a${i}`] = i + 1 < 300 ? { $ref: `#/$defs/a${i + 1}` } : { type: "string" };
    const cases: Array<[string, unknown, RegExp]> = [
      ["invalid pattern", { type: "object", properties: { x: { type: "string", pattern: "(" } } }, /properties\/x\/pattern/],
      ["invalid patternProperties key", { type: "object", patternProperties: { "(": {} } }, /patternProperties/],
      ["remote $ref", { $ref: "https://example.com/schema.json" }, /\$ref/],
      ["dangling $ref", { $ref: "#/$defs/none" }, /\$ref/],
      ["$ref cycle", { $defs: { a: { $ref: "#/$defs/b" }, b: { allOf: [{ $ref: "#/$defs/a" }] } }, $ref: "#/$defs/a" }, /cycle|itself/],
      ["self $ref", { anyOf: [{ type: "string" }, { $ref: "#" }] }, /cycle|itself/],
      ["format __proto__", { type: "string", format: "__proto__" }, /format/],
      ["enum not an array", { enum: 5 }, /enum/],
      ["required not an array", { type: "object", required: "name" }, /required/],
      ["allOf not an array", { allOf: {} }, /allOf/],
      ["null subschema", { type: "object", properties: { x: null } }, /properties\/x/],
      ["type unknown", { type: "text" }, /type/],
      ["bad $id", { $id: "http://[" }, /compiled|\$id/],
      ["lone surrogate key", { type: "object", properties: { "\ud800": {} } }, /compiled|surrogate/],
      ["$dynamicRef", { $dynamicRef: "#node" }, /\$dynamicRef/],
      ["nested past the validator's stack", deep, /deep/],
      ["$refs that fan out exponentially", { $defs: fanOut, $ref: "#/$defs/d0" }, /subschemas/],
      ["a $ref chain past the validator's stack (shallow JSON)", { $defs: refChain, $ref: "#/$defs/a0" }, /deep/],
    ];
    for (const [what, inputSchema, message] of cases) {
      await expectRefused([{ ...hello(), name: "broken", inputSchema }], `workflows.${n}.inputSchema`, message).catch((err: Error) => {
        throw new Error(`${what}: ${err.message}`);
      });
    }
    // The catalog still serves: hello starts as before.
    const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: "Ada" } }, org.key);
    expect(res.status).toBe(200);
  });

  it("a recursive input schema (a tree through properties and items) is fine, and inputs as deep as callers may send are checked", async () => {
    const tree = {
      $ref: "#/$defs/node",
      $defs: {
        node: {
          type: "object",
          properties: { label: { type: "string", pattern: "^[a-z]+$" }, children: { type: "array", items: { $ref: "#/$defs/node" } } },
          required: ["label"],
          additionalProperties: false,
        },
      },
    };
    const res = await signedPost("/internal/catalog", {
      workflows: [...catalogEntries(), { ...hello(), name: "tree", inputSchema: tree }],
    });
    expect(res.status).toBe(200);
    // 31 nodes deep: 62 levels of JSON with the body's own object, within MAX_JSON_DEPTH (64).
    const nest = (depth: number, leaf: string): unknown =>
      depth === 0 ? { label: leaf } : { label: "a", children: [nest(depth - 1, leaf)] };
    const good = await postJson("/workflow/start", { workflowName: "tree", input: nest(30, "z") }, org.key);
    expect(good.status).toBe(200);
    const bad = await postJson("/workflow/start", { workflowName: "tree", input: nest(30, "Z") }, org.key);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as OutputErrorBody).code).toBe("invalid_input");
    await seedCatalog();
  });
});
