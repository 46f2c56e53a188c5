import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import {
  call,
  createPromptWorkflow,
  errorCodeOf,
  type OutputErrorBody,
  postJson,
  scriptHost,
  seedCatalog,
  seedOrganization,
  TEST_ADMIN_KEY,
} from "./helpers.ts";
import { createRunningRun } from "./stream-helpers.ts";
import type { Workflow } from "../../src/db/schema.ts";
import { ApiError } from "../../src/errors.ts";
import { assertValidInput } from "../../src/routes/workflow/input-validation.ts";

async function runCount(organizationId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(organizationId).first<{ n: number }>();
  return row!.n;
}

const organizationCount = () => env.DB.prepare("SELECT COUNT(*) AS n FROM organizations").first<number>("n");

/** Runs `send` against a scripted host, then checks that nothing reached the host and nothing was written: no run, no organization. */
async function refusedWithoutWrites(organizationId: string, send: () => Promise<void>): Promise<void> {
  const runs = await runCount(organizationId);
  const organizations = await organizationCount();
  let hostCalls = 0;
  const undo = scriptHost(() => {
    hostCalls++;
    return Response.json({});
  });
  try {
    await send();
  } finally {
    undo();
  }
  expect(hostCalls).toBe(0);
  expect(await runCount(organizationId)).toBe(runs);
  expect(await organizationCount()).toBe(organizations);
}

describe("Workflow API: bad input gets a clear 4xx and writes nothing", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  it("malformed JSON → 400 invalid_json", async () => {
    const res = await postJson("/workflow/start", '{"workflowName": "hello"', org.key);
    expect(res.status).toBe(400);
    expect(((await res.json()) as OutputErrorBody).code).toBe("invalid_json");
  });

  it("empty body → 400 ValidationError as in Output: as JSON it is {} (workflowName missing), without a type it is no object", async () => {
    const before = await runCount(org.organizationId);
    for (const path of ["/workflow/start", "/workflow/run"]) {
      const asJson = await postJson(path, "", org.key);
      expect(asJson.status).toBe(400);
      const json = (await asJson.json()) as OutputErrorBody;
      expect([json.error, json.code, json.issues?.map((i) => i.path)]).toEqual(["ValidationError", "invalid_request", ["workflowName"]]);
      const untyped = await call(path, { method: "POST", headers: { authorization: `Bearer ${org.key}` } });
      expect(untyped.status).toBe(400);
      const none = (await untyped.json()) as OutputErrorBody;
      expect([none.error, none.code]).toEqual(["ValidationError", "invalid_request"]);
      expect(none.message).toMatch(/expected object/);
    }
    expect(await runCount(org.organizationId)).toBe(before);
  });

  it("a body of white space JSON does not have (U+00A0, U+3000) → 400 invalid_json, not an empty body; JSON's own white space is empty", async () => {
    for (const body of ["\u00a0", "\r\n\u3000"]) {
      const res = await postJson("/workflow/start", body, org.key);
      expect(res.status).toBe(400);
      expect(((await res.json()) as OutputErrorBody).code, JSON.stringify(body)).toBe("invalid_json");
    }
    const empty = (await (await postJson("/workflow/start", " \t\r\n", org.key)).json()) as OutputErrorBody;
    expect([empty.code, empty.issues?.map((i) => i.path)]).toEqual(["invalid_request", ["workflowName"]]);
  });

  it("missing workflowName → 400 naming the field", async () => {
    const res = await postJson("/workflow/start", { input: {} }, org.key);
    expect(res.status).toBe(400);
    const body = (await res.json()) as OutputErrorBody;
    expect(body.error).toBe("ValidationError");
    expect(body.code).toBe("invalid_request");
    expect(body.issues?.map((i) => i.path)).toEqual(["workflowName"]);
    expect(body.message).toContain("workflowName");
  });

  it("wrong-typed workflowName → 400 naming the field", async () => {
    const res = await postJson("/workflow/start", { workflowName: 42 }, org.key);
    expect(res.status).toBe(400);
    expect(((await res.json()) as OutputErrorBody).issues?.[0]?.path).toBe("workflowName");
  });

  it("input of the wrong type for the workflow's schema → 400 invalid_input naming input.name", async () => {
    const res = await postJson("/workflow/start", { workflowName: "hello", input: { name: 5 } }, org.key);
    expect(res.status).toBe(400);
    const body = (await res.json()) as OutputErrorBody;
    expect(body.error).toBe("ValidationError");
    expect(body.code).toBe("invalid_input");
    expect(body.issues?.map((i) => i.path)).toContain("input.name");
  });

  it("input missing a required field → 400 invalid_input", async () => {
    const res = await postJson("/workflow/run", { workflowName: "hello", input: {} }, org.key);
    expect(res.status).toBe(400);
    const body = (await res.json()) as OutputErrorBody;
    expect(body.code).toBe("invalid_input");
    expect(body.message).toContain("name");
  });

  it("timeout out of range on /workflow/run → 400 naming timeout (Output's minimum is 250 ms)", async () => {
    // A string counts only as decimal digits (Output coerces "1000"); Number() would also read an
    // array of one number, hex, exponents, padding and booleans.
    for (const timeout of [0, -5, 249, 1.5, "abc", "", 10_000_000, [500], "0x1f4", "5e2", " 500", true, null, { n: 500 }]) {
      const res = await postJson("/workflow/run", { workflowName: "hello", input: { name: "x" }, timeout }, org.key);
      expect(res.status).toBe(400);
      expect(((await res.json()) as OutputErrorBody).issues?.[0]?.path).toBe("timeout");
    }
  });

  it("unknown workflow → 424 UnsupportedWorkflowError, as Output", async () => {
    const res = await postJson("/workflow/start", { workflowName: "does_not_exist" }, org.key);
    expect(res.status).toBe(424);
    const body = (await res.json()) as OutputErrorBody;
    expect(body.error).toBe("UnsupportedWorkflowError");
    expect(body.code).toBe("unsupported_workflow");
    // A name longer than any catalog entry's is just as unknown (Output caps no name); one past 200 is 400.
    for (const workflowName of ["w".repeat(65), "x".repeat(200), "a name with spaces/and slashes", "__proto__"]) {
      for (const path of ["/workflow/start", "/workflow/run"]) {
        const unknown = await postJson(path, { workflowName }, org.key);
        expect([unknown.status, ((await unknown.json()) as OutputErrorBody).code], `${path} ${workflowName.slice(0, 20)}`).toEqual([
          424,
          "unsupported_workflow",
        ]);
      }
    }
    const tooLong = await postJson("/workflow/start", { workflowName: "x".repeat(201) }, org.key);
    expect([tooLong.status, ((await tooLong.json()) as OutputErrorBody).code]).toEqual([400, "invalid_request"]);
  });

  it("body over 1 MiB → 413 payload_too_large", async () => {
    const big = JSON.stringify({ workflowName: "hello", input: { name: "x".repeat(1024 * 1024 + 10) } });
    const res = await postJson("/workflow/start", big, org.key);
    expect(res.status).toBe(413);
    expect(((await res.json()) as OutputErrorBody).code).toBe("payload_too_large");
  });

  it("unknown workflow id on status/result → 404 WorkflowNotFoundError; a malformed one → 400 ValidationError", async () => {
    const auth = { authorization: `Bearer ${org.key}` };
    for (const id of ["hello-00000000-0000-4000-8000-000000000000", "V1StGXR8_Z5jdHi6B-myT", "order:42"]) {
      for (const suffix of ["status", "result"]) {
        const res = await call(`/workflow/${id}/${suffix}`, { headers: auth });
        expect(res.status).toBe(404);
        const body = (await res.json()) as OutputErrorBody;
        expect([body.error, body.code, body.workflowId]).toEqual(["WorkflowNotFoundError", "run_not_found", id]);
      }
    }
    for (const id of ["..%2F..%2Fetc", "x".repeat(300), "h%C3%A9llo-%C3%BC"]) {
      for (const suffix of ["status", "result"]) {
        const res = await call(`/workflow/${id}/${suffix}`, { headers: auth });
        expect(res.status).toBe(400);
        expect(((await res.json()) as OutputErrorBody).error).toBe("ValidationError");
      }
    }
  });

  it("the catalog's own checks hold at the edge: a summarize_url URL that is not http(s) → 400 invalid_input; a domain in capitals is fine", async () => {
    for (const url of ["ftp://example.com/file", "javascript:alert(1)", "file:///etc/passwd", `https://example.com/${"a".repeat(2100)}`]) {
      const res = await postJson("/workflow/start", { workflowName: "summarize_url", input: { url } }, org.key);
      const body = (await res.json()) as OutputErrorBody;
      expect([res.status, body.code], url.slice(0, 40)).toEqual([400, "invalid_input"]);
      expect(body.issues?.map((i) => i.path)).toContain("input.url");
    }
    // A pattern's error says what the value must be (the schema's description), not only that it does not match.
    const ftp = (await (
      await postJson("/workflow/start", { workflowName: "summarize_url", input: { url: "ftp://x/y" } }, org.key)
    ).json()) as OutputErrorBody;
    expect(ftp.issues).toContainEqual({ path: "input.url", message: "String does not match pattern: must be an http or https URL" });
    expect(ftp.message).toContain("must be an http or https URL");
    // Past the input check (in another organization: these are accepted, so they leave rows).
    const other = await seedOrganization();
    for (const input of [{ url: "HTTPS://example.com/page" }, { url: "https://example.com/" }])
      expect(
        ((await (await postJson("/workflow/start", { workflowName: "summarize_url", input }, other.key)).json()) as OutputErrorBody).code,
      ).not.toBe("invalid_input");
    const domain = await postJson("/workflow/start", { workflowName: "company_research", input: { domain: "Example.COM" } }, other.key);
    expect(((await domain.json()) as OutputErrorBody).code).not.toBe("invalid_input");
    const bad = await postJson("/workflow/start", { workflowName: "company_research", input: { domain: "example" } }, org.key);
    expect(((await bad.json()) as OutputErrorBody).code).toBe("invalid_input");
  });

  it("none of the refused requests left a run row", async () => {
    expect(await runCount(org.organizationId)).toBe(0);
  });
});

describe("Workflow API: hostile bodies (security)", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });
  const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;

  it("JSON nested deeper than 64 levels → 400 json_too_deep naming the limit, on every JSON body route", async () => {
    for (const depth of [63, 4_500, 100_000]) {
      // depth + 2 levels in all (the body object and input around it): 65 is one past the limit.
      const res = await postJson("/workflow/start", `{"workflowName":"hello","input":{"name":"x","deep":${nested(depth)}}}`, org.key);
      expect(res.status).toBe(400);
      const body = (await res.json()) as OutputErrorBody;
      expect(body.code).toBe("json_too_deep");
      expect(body.message).toContain("64");
    }
    const run = await createRunningRun(org.organizationId, "approval");
    for (const path of [
      "/workflow/run",
      `/workflow/${run.workflowId}/signal/approve`,
      `/workflow/${run.workflowId}/query/progress`,
      `/workflow/${run.workflowId}/update/setPriority`,
      `/workflow/${run.workflowId}/terminate`,
    ]) {
      const res = await postJson(path, nested(4_500), org.key);
      expect(res.status, path).toBe(400);
      expect(errorCodeOf(await res.json()), path).toBe("json_too_deep");
    }
  });

  it("64 levels are fine, and brackets inside strings do not count", async () => {
    // 64 levels in all: the body object, input, and 62 arrays. Past the depth check, the input schema answers.
    const atLimit = await postJson("/workflow/start", `{"workflowName":"hello","input":{"name":${nested(62)}}}`, org.key);
    expect(errorCodeOf(await atLimit.json())).toBe("invalid_input");
    const inString = await postJson(
      "/workflow/start",
      { workflowName: "hello", input: { name: 5, text: `${"[{".repeat(5_000)}\\"` } },
      org.key,
    );
    expect(errorCodeOf(await inString.json())).toBe("invalid_input");
  });

  it("a number a 64-bit float would change (past its range: Infinity, stored as null; an integer past ±2^53 it would round; a nonzero one it reads as 0) → 400 invalid_json naming where", async () => {
    for (const [input, path] of [
      ['{"name":"Ada","n":1e400}', "input.n"],
      ['{"name":"Ada","tweet":{"id":1850000000000000001}}', "input.tweet.id"],
      ['{"name":"Ada","tiny":[0,1e-330]}', "input.tiny.1"],
      ['{"name":"Ada","list":[1,-1E+999]}', "input.list.1"],
      [`{"name":"Ada","big":${"9".repeat(400)}}`, "input.big"],
      // A long mantissa with a short exponent: 1e310.
      [`{"name":"Ada","long":1${"0".repeat(300)}e10}`, "input.long"],
    ]) {
      for (const route of ["/workflow/start", "/workflow/run"]) {
        const res = await postJson(route, `{"workflowName":"hello","input":${input}}`, org.key);
        expect(res.status, `${route} ${path}`).toBe(400);
        const error = (await res.json()) as OutputErrorBody & { issues: { path: string }[] };
        expect(error.code, path).toBe("invalid_json");
        expect(
          error.issues.map((i) => i.path),
          path,
        ).toEqual([path]);
      }
    }
    // Large finite numbers, integers a float holds exactly, and exponents inside strings, are not refused: past the check, the schema answers.
    const finite = await postJson(
      "/workflow/start",
      '{"workflowName":"hello","input":{"name":5,"n":1.7e308,"id":1152921504606846976,"s":"1e400 12345678901234567890"}}',
      org.key,
    );
    expect(errorCodeOf(await finite.json())).toBe("invalid_input");
  });

  it("half a surrogate pair in a key or a string (a \\ud800 escape alone) → 400 invalid_json naming where, on every JSON start route, not a 500 from the schema check", async () => {
    const hello = (await env.DB.prepare("SELECT id FROM workflows WHERE name = 'hello' AND organization_id IS NULL").first<{
      id: string;
    }>())!.id;
    const cases: Array<[string, string, string]> = [
      ["/workflow/start", '{"workflowName":"hello","input":{"name":"x","\\ud800":1}}', "input.\ufffd"],
      ["/workflow/run", '{"workflowName":"hello","input":{"name":"Ada \\udfff"}}', "input.name"],
      ["/api/v1/workflow-runs/execute", `{"workflowId":"${hello}","inputs":{"\\uDBFF":1}}`, "inputs.\ufffd"],
      ["/workflow/start", '{"workflowName":"hello","input":{"list":["ok","\\ud83d"]}}', "input.list.1"],
    ];
    for (const [route, body, path] of cases) {
      // The Workflow Runs API authenticates its internal caller, who names the organization.
      const res = route.startsWith("/api/v1/workflow-runs")
        ? await postJson(route, body, "edge-test-internal-secret-of-32-characters", { "x-organization-id": org.organizationId })
        : await postJson(route, body, org.key);
      expect(res.status, `${route} ${body}`).toBe(400);
      const error = (await res.json()) as { issues?: { path: string }[]; error?: string | { issues: { path: string }[] } };
      expect(errorCodeOf(error), body).toBe("invalid_json");
      const issues = typeof error.error === "object" ? error.error.issues : error.issues;
      expect(
        issues?.map((i) => i.path),
        body,
      ).toEqual([path]);
    }
    // A whole pair, escaped or not, is fine: past the check, the schema answers.
    const pair = await postJson("/workflow/start", '{"workflowName":"hello","input":{"name":5,"s":"\\ud83d\\ude00 😀"}}', org.key);
    expect(errorCodeOf(await pair.json())).toBe("invalid_input");
  });

  it("invalid UTF-8 in a JSON body → 400 invalid_json (not replaced with U+FFFD)", async () => {
    const prefix = new TextEncoder().encode('{"workflowName":"hello","input":{"name":"');
    const suffix = new TextEncoder().encode('"}}');
    for (const bad of [[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
      const body = new Uint8Array([...prefix, ...bad, ...suffix]);
      const res = await call("/workflow/start", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${org.key}` },
        body,
      });
      expect(res.status).toBe(400);
      const error = (await res.json()) as OutputErrorBody;
      expect(error.code).toBe("invalid_json");
      expect(error.message).toMatch(/UTF-8/);
    }
  });

  it("an input with 80,000 keys the schema does not take → 400 invalid_input listing 20 issues and counting the rest, in a few KB", async () => {
    const input: Record<string, string> = { name: "Ada" };
    for (let i = 0; i < 80_000; i++) input[`k${i}`] = "";
    const res = await postJson("/workflow/start", { workflowName: "hello", input }, org.key);
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text.length).toBeLessThan(64 * 1024);
    const error = JSON.parse(text) as OutputErrorBody;
    expect(error.code).toBe("invalid_input");
    expect(error.issues).toHaveLength(21);
    expect(error.issues!.at(-1)).toMatchObject({ path: "(more)", message: expect.stringMatching(/^\d+ more issues not listed$/) });
    expect(error.message).toMatch(/and \d+ more$/);
  });

  it("issue paths name input keys as sent (not as JSON-pointer or URI escapes)", async () => {
    const res = await postJson(
      "/workflow/start",
      { workflowName: "hello", input: { name: "Ada", prénom: "x", "a/b": 1, "a~b": 2 } },
      org.key,
    );
    expect(res.status).toBe(400);
    const paths = ((await res.json()) as OutputErrorBody).issues!.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(["input.prénom", "input.a/b", "input.a~b"]));
  });

  it("an input so wrong that the schema validator's own error list overflows the stack → 400 invalid_input naming the first, not a 500", async () => {
    const workflow = {
      id: "wf-wide",
      name: "wide",
      updatedAt: new Date(0),
      inputSchema: { type: "object", properties: { xs: { type: "array", items: { type: "string" } } } },
    } as unknown as Workflow;
    let thrown: unknown;
    try {
      assertValidInput(workflow, { xs: new Array(400_000).fill(0) });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ApiError);
    expect((thrown as ApiError).code).toBe("invalid_input");
    expect((thrown as ApiError).issues![0]!.path).toBe("input.xs.0");
  });

  it("a body sent as another media type (text/plain, a form) → 415 unsupported_media_type on every JSON route, nothing started; without a Content-Type it is read as JSON", async () => {
    const prompt = await createPromptWorkflow(org.organizationId);
    const { workflowId } = await createRunningRun(org.organizationId, "approval");
    const before = await runCount(org.organizationId);
    const start = JSON.stringify({ workflowName: "hello", input: { name: "Ada" } });
    let hostCalls = 0;
    const undo = scriptHost(() => {
      hostCalls++;
      return Response.json({});
    });
    try {
      for (const [path, body] of [
        ["/workflow/start", start],
        ["/workflow/run", start],
        [`/api/v1/run/${prompt}`, JSON.stringify({ audience: "a", topic: "b" })],
        [`/workflow/${workflowId}/signal/approve`, "{}"],
        [`/workflow/${workflowId}/terminate`, "{}"],
      ] as const) {
        for (const type of ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded"]) {
          const res = await call(path, { method: "POST", headers: { authorization: `Bearer ${org.key}`, "content-type": type }, body });
          expect(res.status, `${path} as ${type}`).toBe(415);
          expect(errorCodeOf(await res.json()), path).toBe("unsupported_media_type");
        }
      }
    } finally {
      undo();
    }
    expect(hostCalls).toBe(0);
    expect(await runCount(org.organizationId)).toBe(before);
    // No Content-Type at all (bytes: fetch gives a string body text/plain): read as JSON, here as far as the schema.
    const untyped = await call("/workflow/start", {
      method: "POST",
      headers: { authorization: `Bearer ${org.key}` },
      body: new TextEncoder().encode(JSON.stringify({ workflowName: 5 })),
    });
    expect([untyped.status, errorCodeOf(await untyped.json())]).toEqual([400, "invalid_request"]);
  });

  it("a body with a Content-Encoding (a gzip body, a plain one labelled br) → 415 unsupported_media_type on every route family, nothing started or written", async () => {
    const prompt = await createPromptWorkflow(org.organizationId);
    const { workflowId } = await createRunningRun(org.organizationId, "approval");
    const start = JSON.stringify({ workflowName: "hello", input: { name: "Ada" } });
    const gzipped = new Uint8Array(await new Response(new Blob([start]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer());
    await refusedWithoutWrites(org.organizationId, async () => {
      for (const [path, key] of [
        ["/workflow/start", org.key],
        ["/workflow/run", org.key],
        [`/api/v1/run/${prompt}`, org.key],
        [`/workflow/${workflowId}/signal/approve`, org.key],
        ["/admin/v1/organizations", TEST_ADMIN_KEY],
      ] as const) {
        for (const [encoding, body] of [
          ["gzip", gzipped],
          ["br", start],
        ] as const) {
          const res = await call(path, {
            method: "POST",
            headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-encoding": encoding },
            body,
          });
          expect([path, encoding, res.status, errorCodeOf(await res.json())]).toEqual([path, encoding, 415, "unsupported_media_type"]);
        }
      }
    });
  });

  it("a JSON body (or an execute form) whose charset parameter names another encoding (ISO-8859-1, UTF-16, one charset=utf-8 among others) → 415 unsupported_media_type on every route family, never read as UTF-8; nothing started or written", async () => {
    const prompt = await createPromptWorkflow(org.organizationId);
    const { workflowId } = await createRunningRun(org.organizationId, "approval");
    // Valid UTF-8 ("Adé"), so read as UTF-8 it starts a run; its sender meant "AdÃ©" (Latin-1) or
    // something else again (UTF-16): the edge would run what a proxy in front of it read differently.
    const start = new TextEncoder().encode(JSON.stringify({ workflowName: "hello", input: { name: "Adé" } }));
    await refusedWithoutWrites(org.organizationId, async () => {
      for (const [path, headers] of [
        ["/workflow/start", { authorization: `Bearer ${org.key}` }],
        ["/workflow/run", { authorization: `Bearer ${org.key}` }],
        [`/api/v1/run/${prompt}`, { authorization: `Bearer ${org.key}` }],
        [`/workflow/${workflowId}/signal/approve`, { authorization: `Bearer ${org.key}` }],
        [
          "/api/v1/workflow-runs/execute",
          { authorization: "Bearer edge-test-internal-secret-of-32-characters", "x-organization-id": org.organizationId },
        ],
        ["/admin/v1/organizations", { authorization: `Bearer ${TEST_ADMIN_KEY}` }],
      ] as const) {
        for (const type of [
          "application/json; charset=iso-8859-1",
          "application/json;charset=UTF-16LE",
          'application/json; charset="latin1"',
          "application/json; charset=utf-8; charset=iso-8859-1",
        ]) {
          const res = await call(path, { method: "POST", headers: { ...headers, "content-type": type }, body: start });
          expect([path, type, res.status, errorCodeOf(await res.json())]).toEqual([path, type, 415, "unsupported_media_type"]);
        }
      }
      // The execute routes' forms too, with an Idempotency-Key (which fingerprints the fields) or without.
      const execute = { authorization: "Bearer edge-test-internal-secret-of-32-characters", "x-organization-id": org.organizationId };
      for (const path of ["/api/v1/workflow-runs/execute", "/api/v1/workflow-runs/execute/stream"]) {
        for (const key of [{}, { "idempotency-key": "charset-form" }] as Array<Record<string, string>>) {
          const res = await call(path, {
            method: "POST",
            headers: { ...execute, ...key, "content-type": "application/x-www-form-urlencoded; charset=iso-8859-1" },
            body: new Uint8Array([
              ...new TextEncoder().encode(`workflowId=${crypto.randomUUID()}&inputs={"name":"Ad`),
              0xc3,
              0xa9,
              0x22,
              0x7d,
            ]),
          });
          expect([path, key, res.status, errorCodeOf(await res.json())]).toEqual([path, key, 415, "unsupported_media_type"]);
        }
      }
    });
    // Every label of UTF-8 is UTF-8, in any case, quoted or not.
    for (const type of ["application/json; charset=UTF-8", 'application/json;charset="utf-8"', "application/json; charset=utf8"]) {
      const res = await call("/workflow/start", {
        method: "POST",
        headers: { authorization: `Bearer ${org.key}`, "content-type": type },
        body: JSON.stringify({ workflowName: 5 }),
      });
      expect([type, res.status, errorCodeOf(await res.json())]).toEqual([type, 400, "invalid_request"]);
    }
  });

  it("a JSON null body → 400 invalid_request on the routes whose fields are all optional (signal, feedback, query, terminate, reset), not read as {}; nothing reaches the host", async () => {
    const { workflowId } = await createRunningRun(org.organizationId, "approval");
    let hostCalls = 0;
    const undo = scriptHost(() => {
      hostCalls++;
      return Response.json({ delivered: true });
    });
    try {
      for (const path of [
        `/workflow/${workflowId}/signal/approve`,
        `/workflow/${workflowId}/feedback`,
        `/workflow/${workflowId}/query/progress`,
        `/workflow/${workflowId}/terminate`,
        `/workflow/${workflowId}/reset`,
      ]) {
        const res = await postJson(path, "null", org.key);
        expect(res.status, path).toBe(400);
        const body = (await res.json()) as OutputErrorBody;
        expect([body.code, body.error], path).toEqual(["invalid_request", "ValidationError"]);
      }
    } finally {
      undo();
    }
    expect(hostCalls).toBe(0);
  });

  it("none of the refused requests left a run row", async () => {
    const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ? AND workflow_name <> 'approval'")
      .bind(org.organizationId)
      .first<{ n: number }>();
    expect(row!.n).toBe(0);
  });
});
