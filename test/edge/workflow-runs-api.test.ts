/** The Workflow Runs API at the edge (host unreachable): auth, validation, list, dashboard, detail, cancel. */
import { env } from "cloudflare:workers";
import { SignJWT } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { LISTED_INPUT_MAX_BYTES } from "../../src/db/workflow-runs.ts";
import { forgetCachedCatalog } from "../../src/db/workflows.ts";
import { blockingExecuteAnswer } from "../../src/routes/workflow-runs/execute.ts";
import { clearWorkflowNameCache, workflowNameById } from "../../src/services/runs.ts";
import { WORKFLOW_RUN_STATUSES } from "../../src/shared/run-status.ts";
import { interceptD1InPlace } from "../support/d1-intercept.ts";
import { admin, call, createPromptWorkflow, type ErrorBody, scriptHost, seedCatalog, seedOrganization } from "./helpers.ts";

const JWT_SECRET = "edge-test-jwt-secret-at-least-32-bytes-long";

async function jwtFor(organizationId: string, options: { secret?: string; expiresIn?: string; claims?: Record<string, unknown> } = {}) {
  return new SignJWT({ org_id: organizationId, ...options.claims })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("user-1")
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? "5m")
    .sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}

const get = (path: string, token: string, headers: Record<string, string> = {}) =>
  call(path, { headers: { authorization: `Bearer ${token}`, ...headers } });

/** POST /api/v1/workflow-runs/cancel's answer. */
async function cancelRuns<T = { results: Array<{ runId: string; status: string }>; remaining?: number }>(token: string, body: unknown) {
  const res = await call("/api/v1/workflow-runs/cancel", {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await res.json()) as T;
}

async function workflowIdOf(name: string): Promise<string> {
  return (await env.DB.prepare("SELECT id FROM workflows WHERE name = ? AND organization_id IS NULL").bind(name).first<{ id: string }>())!
    .id;
}

/** A completed run of this organization's workflow, showing `workflowName`; its id. */
async function insertRunOf(organizationId: string, workflowId: string, workflowName: string): Promise<string> {
  const id = crypto.randomUUID();
  await env.DB.prepare(
    `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input)
     VALUES (?, ?, ?, ?, ?, 'completed', '{}')`,
  )
    .bind(id, organizationId, workflowId, workflowName, `${workflowId}-${id}`)
    .run();
  return id;
}

/** The ids of the runs `search=text` lists for the token's organization. */
const searchedRunIds = (token: string) => async (text: string) =>
  (
    (await (await get(`/api/v1/workflow-runs?search=${encodeURIComponent(text)}`, token)).json()) as { data: Array<{ id: string }> }
  ).data.map((r) => r.id);

async function insertRun(
  organizationId: string,
  workflowName: string,
  status: string,
  createdAt: string,
  temporalRunId: string | null = "r-1",
) {
  const id = crypto.randomUUID();
  await env.DB.prepare(
    `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, temporal_run_id, status, input, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, '{"name":"Ada"}', ?, ?)`,
  )
    .bind(
      id,
      organizationId,
      await workflowIdOf(workflowName),
      workflowName,
      `${workflowName}-${id}`,
      temporalRunId,
      status,
      createdAt,
      createdAt,
    )
    .run();
  return id;
}

/** A response's status with its error envelope's fields, for one assertion. */
const statusAndError = async (res: Response) => ({ status: res.status, ...((await res.json()) as ErrorBody).error });
/** A raw body POSTed with its content type, by a Workflow Runs API caller holding `token`. */
const postAs = (token: string, path: string, body: BodyInit, type: string, headers: Record<string, string> = {}) =>
  call(path, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": type, ...headers }, body });

describe("Workflow Runs API: auth", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    await seedCatalog();
    org = await seedOrganization();
  });

  it("accepts a valid JWT and maps its org_id claim to the organization", async () => {
    const token = await jwtFor(org.organizationId);
    const res = await get("/api/v1/workflow-runs", token);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-ratelimit-limit")).toBeTruthy();
    // Each request counts once against the caller's limit.
    const next = await get("/api/v1/workflow-runs", token);
    expect(Number(res.headers.get("x-ratelimit-remaining")) - Number(next.headers.get("x-ratelimit-remaining"))).toBe(1);
  });

  it("refuses API keys, forged, expired and claim-less JWTs with 401", async () => {
    const claimless = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(JWT_SECRET));
    const noExp = await new SignJWT({ org_id: org.organizationId })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(JWT_SECRET));
    for (const token of [
      org.key,
      await jwtFor(org.organizationId, { secret: "another-secret-of-sufficient-length!!" }),
      await jwtFor(org.organizationId, { expiresIn: "-1m" }),
      claimless,
      noExp,
      "not.a.jwt",
    ]) {
      const res = await get("/api/v1/workflow-runs", token);
      expect(res.status).toBe(401);
      expect(((await res.json()) as ErrorBody).error.code).toBe("unauthorized");
    }
    expect((await call("/api/v1/workflow-runs")).status).toBe(401);
  });

  it("accepts the internal service secret with X-Organization-Id, and requires the header", async () => {
    expect(
      (await get("/api/v1/workflow-runs", "edge-test-internal-secret-of-32-characters", { "x-organization-id": org.organizationId }))
        .status,
    ).toBe(200);
    expect((await get("/api/v1/workflow-runs", "edge-test-internal-secret-of-32-characters")).status).toBe(400);
    expect((await get("/api/v1/workflow-runs", "edge-test-internal-secre", { "x-organization-id": org.organizationId })).status).toBe(401);
    // An organization that does not exist authenticates nobody (it was a 500 on execute before).
    expect(
      (await get("/api/v1/workflow-runs", "edge-test-internal-secret-of-32-characters", { "x-organization-id": "org_missing" })).status,
    ).toBe(401);
    expect((await get("/api/v1/workflow-runs", await jwtFor("org_missing"))).status).toBe(401);
  });

  it("another organization's run is 404 on detail, dashboard counts and list", async () => {
    const other = await seedOrganization();
    const runId = await insertRun(other.organizationId, "hello", "completed", "2026-01-01T00:00:00.000Z");
    const token = await jwtFor(org.organizationId);
    const detail = await get(`/api/v1/workflow-runs/${runId}`, token);
    expect(detail.status).toBe(404);
    expect(((await detail.json()) as ErrorBody).error.code).toBe("run_not_found");
    const dash = (await (await get(`/api/v1/workflow-runs/dashboard/${await workflowIdOf("hello")}`, token)).json()) as { total: number };
    expect(dash.total).toBe(0);
  });
});

describe("Workflow Runs API: list, dashboard and detail", () => {
  let token: string;
  let organizationId: string;
  let outputKey: string;
  const ids: Record<string, string> = {};
  beforeAll(async () => {
    await seedCatalog();
    ({ organizationId, key: outputKey } = await seedOrganization());
    token = await jwtFor(organizationId);
    const rows: Array<[string, string, string]> = [
      ["hello", "completed", "2026-01-01T00:00:01.000Z"],
      ["hello", "failed", "2026-01-01T00:00:02.000Z"],
      ["hello", "timed_out", "2026-01-01T00:00:03.000Z"],
      ["hello", "running", "2026-01-01T00:00:04.000Z"],
      ["two_steps", "cancelled", "2026-01-01T00:00:05.000Z"],
      ["two_steps", "terminated", "2026-01-01T00:00:06.000Z"],
      ["approval", "scheduled", "2026-01-01T00:00:07.000Z"],
    ];
    for (const [name, status, at] of rows) ids[`${name}:${status}`] = await insertRun(organizationId, name, status, at);
  });

  it("lists newest first with pagination metadata; page and limit work", async () => {
    const page1 = (await (await get("/api/v1/workflow-runs?limit=3", token)).json()) as {
      data: Array<{ id: string; status: string; inputs: unknown }>;
      pagination: Record<string, unknown>;
    };
    expect(page1.data.map((r) => r.id)).toEqual([ids["approval:scheduled"], ids["two_steps:terminated"], ids["two_steps:cancelled"]]);
    expect(page1.pagination).toEqual({ page: 1, limit: 3, total: 7, totalPages: 3, hasNextPage: true, hasPreviousPage: false });
    expect(page1.data[0]!.inputs).toEqual([{ name: "name", value: "Ada" }]);
    const page3 = (await (await get("/api/v1/workflow-runs?limit=3&page=3", token)).json()) as {
      data: unknown[];
      pagination: { hasNextPage: boolean };
    };
    expect(page3.data).toHaveLength(1);
    expect(page3.pagination.hasNextPage).toBe(false);
    const defaults = (await (await get("/api/v1/workflow-runs", token)).json()) as { pagination: { limit: number; page: number } };
    expect(defaults.pagination).toMatchObject({ page: 1, limit: 10 });
  });

  it("security: an input over 64 KiB is left out of the list (inputsOmitted), so a page stays small; the run's detail has it whole", async () => {
    const big = await seedOrganization();
    const bigToken = await jwtFor(big.organizationId);
    const small = await insertRun(big.organizationId, "hello", "completed", "2026-01-01T00:00:00.000Z");
    const large = await insertRun(big.organizationId, "hello", "completed", "2026-01-02T00:00:00.000Z");
    const text = "x".repeat(LISTED_INPUT_MAX_BYTES);
    await env.DB.prepare("UPDATE runs SET input = ? WHERE id = ?").bind(JSON.stringify({ text }), large).run();
    const listed = (await (await get("/api/v1/workflow-runs", bigToken)).json()) as { data: Array<Record<string, unknown>> };
    expect(listed.data.map((r) => [r.id, r.inputs, r.inputsOmitted])).toEqual([
      [large, [], true],
      [small, [{ name: "name", value: "Ada" }], undefined],
    ]);
    const detail = (await (await get(`/api/v1/workflow-runs/${large}`, bigToken)).json()) as Record<string, unknown>;
    expect(detail.inputs).toEqual([{ name: "text", value: text }]);
    expect(detail).not.toHaveProperty("inputsOmitted");
  });

  it("filters by status (API statuses group ours), by workflowId, and searches by workflow name", async () => {
    const list = async (query: string) =>
      ((await (await get(`/api/v1/workflow-runs?${query}`, token)).json()) as { data: Array<{ id: string; status: string }> }).data;
    expect((await list("status=failed")).map((r) => r.id).sort()).toEqual([ids["hello:failed"], ids["hello:timed_out"]].sort());
    expect((await list("status=cancelled")).every((r) => r.status === "cancelled")).toBe(true);
    expect(await list("status=cancelled")).toHaveLength(2);
    expect(await list("status=waiting")).toEqual([]);
    expect(await list(`workflowId=${await workflowIdOf("two_steps")}`)).toHaveLength(2);
    expect(await list("search=STEPS")).toHaveLength(2);
    expect(await list("search=hel")).toHaveLength(4);
    expect(await list("search=%25")).toEqual([]);
    // Found by fuzzing: a search full of LIKE wildcards was a 500 (pattern too complex).
    expect(await list(`search=${encodeURIComponent("%_".repeat(100))}`)).toEqual([]);
    expect(await list("search=nothing-matches")).toEqual([]);
  });

  it("an empty or blank search is no filter (every name holds the empty string): the whole list, not a 400", async () => {
    const total = async (query: string) => {
      const res = await get(`/api/v1/workflow-runs?${query}`, token);
      expect(res.status, query).toBe(200);
      return ((await res.json()) as { pagination: { total: number } }).pagination.total;
    };
    const all = await total("");
    expect(all).toBeGreaterThan(0);
    // What a client sends for an empty search box (axios' params: {search: ""}, ?search=${q}).
    for (const query of ["search=", "search=%20%20", "search=+&limit=3"]) expect(await total(query), query).toBe(all);
  });

  it("a search matching more workflows than one D1 statement may bind (100) still answers, with every match's runs", async () => {
    const { organizationId: many } = await seedOrganization();
    const names = Array.from({ length: 150 }, (_, i) => `report-${i}`);
    await env.DB.batch(
      names.map((name) =>
        env.DB.prepare(
          "INSERT INTO workflows (id, organization_id, name, kind, input_schema, output_schema, published) VALUES (?, ?, ?, 'prompt', '{}', '{}', 1)",
        ).bind(`wf_${name}`, many, name),
      ),
    );
    await env.DB.prepare(
      `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input)
       VALUES (?, ?, 'wf_report-149', 'report-149', ?, 'completed', '{}')`,
    )
      .bind(crypto.randomUUID(), many, `report-149-${crypto.randomUUID()}`)
      .run();
    const res = await get("/api/v1/workflow-runs?search=report", await jwtFor(many));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: Array<{ workflowName: string }>; pagination: { total: number } };
    expect(body.data.map((r) => r.workflowName)).toEqual(["report-149"]);
  });

  it("a search finds a run by the name it shows (its workflow's name when it ran) and by its workflow's current name", async () => {
    const { organizationId: renamed } = await seedOrganization();
    await env.DB.prepare(
      "INSERT INTO workflows (id, organization_id, name, kind, input_schema, output_schema, published) VALUES ('wf_digest', ?, 'weekly-digest', 'prompt', '{}', '{}', 1)",
    )
      .bind(renamed)
      .run();
    const runId = crypto.randomUUID();
    await env.DB.prepare(
      `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input)
       VALUES (?, ?, 'wf_digest', 'weekly-digest', ?, 'completed', '{}')`,
    )
      .bind(runId, renamed, `run_prompt-${runId}`)
      .run();
    // Renamed after the run (PATCH /admin/v1/workflows/{id} may change a prompt workflow's name).
    await env.DB.prepare("UPDATE workflows SET name = 'monday-briefing' WHERE id = 'wf_digest'").run();
    const renamedToken = await jwtFor(renamed);
    const search = async (text: string) =>
      (
        (await (await get(`/api/v1/workflow-runs?search=${text}`, renamedToken)).json()) as {
          data: Array<{ id: string; workflowName: string }>;
        }
      ).data;
    expect(await search("WEEKLY")).toEqual([expect.objectContaining({ id: runId, workflowName: "weekly-digest" })]);
    expect((await search("briefing")).map((r) => r.id)).toEqual([runId]);
    expect(await search("nothing-matches")).toEqual([]);
  });

  it("a search finds a name whichever Unicode form the caller types (NFC or NFD), and a name stored before names were normalized by its own form", async () => {
    const { organizationId: cafe } = await seedOrganization();
    for (const [id, name] of [
      ["wf_nfc", "Caf\u00e9 digest"],
      ["wf_legacy", "Cafe\u0301 legacy"],
    ]) {
      await env.DB.prepare(
        "INSERT INTO workflows (id, organization_id, name, kind, input_schema, output_schema, published) VALUES (?, ?, ?, 'prompt', '{}', '{}', 1)",
      )
        .bind(id, cafe, name)
        .run();
      await env.DB.prepare(
        `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input)
         VALUES (?, ?, ?, ?, ?, 'completed', '{}')`,
      )
        .bind(crypto.randomUUID(), cafe, id, name, `run_prompt-${crypto.randomUUID()}`)
        .run();
    }
    const cafeToken = await jwtFor(cafe);
    const search = async (text: string) =>
      (
        (await (await get(`/api/v1/workflow-runs?search=${encodeURIComponent(text)}`, cafeToken)).json()) as {
          data: Array<{ workflowName: string }>;
        }
      ).data.map((r) => r.workflowName);
    expect(await search("caf\u00e9 d")).toEqual(["Caf\u00e9 digest"]);
    expect(await search("cafe\u0301 d")).toEqual(["Caf\u00e9 digest"]);
    expect(await search("cafe\u0301 l")).toEqual(["Cafe\u0301 legacy"]);
  });

  it("a search is case-insensitive beyond ASCII (Latin, Greek, Cyrillic), for a workflow's current and former names, in either Unicode form", async () => {
    const { organizationId: intl } = await seedOrganization();
    const workflowId = await createPromptWorkflow(intl, { name: "Caf\u00e9 \u00c4rzte \u0394\u03bf\u03ba\u03b9\u03bc\u03ae" });
    const runId = await insertRunOf(intl, workflowId, "Caf\u00e9 \u00c4rzte \u0394\u03bf\u03ba\u03b9\u03bc\u03ae");
    const search = searchedRunIds(await jwtFor(intl));
    for (const text of [
      "CAF\u00c9 \u00c4RZTE \u0394\u039f\u039a\u0399\u039c\u0389",
      "caf\u00e9 \u00e4rzte \u03b4\u03bf\u03ba\u03b9\u03bc\u03ae",
      "cAf\u00c9 \u00e4RzTe \u0394\u03bf\u039a\u03b9\u039c\u03ae",
      "CAFE\u0301 A\u0308RZTE",
    ]) {
      expect(await search(text), text).toEqual([runId]);
    }
    expect(await search("\u00c4rzte \u0394\u03bf\u03ba\u03b9\u03bc\u03b7")).toEqual([]); // accents are not folded: \u03b7 is not \u03ae

    // Renamed (PATCH): the former name is still found in any case, the new one too, and a final
    // sigma (\u03c2, what lower-casing gives a word-final \u03a3) is found by a typed \u03c3.
    expect(
      (await admin("PATCH", `/admin/v1/workflows/${workflowId}`, { name: "\u039f\u0394\u039f\u03a3 \u041c\u043e\u0441\u043a\u0432\u0430" }))
        .status,
    ).toBe(200);
    for (const text of [
      "\u00e4RZTE",
      "\u043c\u043e\u0441\u043a\u0432\u0430",
      "\u041c\u041e\u0421\u041a\u0412\u0410",
      "\u03bf\u03b4\u03bf\u03c3 \u043c",
      "\u03bf\u03b4\u03bf\u03c2",
    ]) {
      expect(await search(text), text).toEqual([runId]);
    }
  });

  it("a workflow written without its folded name (by a Worker older than migration 0026) is found case-insensitively once the host publishes its catalog", async () => {
    const { organizationId: legacy } = await seedOrganization();
    const workflowId = `wf_legacy${crypto.randomUUID().slice(0, 8)}`;
    await env.DB.prepare(
      "INSERT INTO workflows (id, organization_id, name, kind, input_schema, output_schema, published) VALUES (?, ?, '\u00c4rzte', 'prompt', '{}', '{}', 1)",
    )
      .bind(workflowId, legacy)
      .run();
    const runId = await insertRunOf(legacy, workflowId, "\u00c4rzte");
    const search = searchedRunIds(await jwtFor(legacy));
    // Until then, as before: its name as stored, ASCII letters in either case.
    expect(await search("\u00c4RZTE")).toEqual([runId]);
    await seedCatalog();
    expect(await search("\u00e4rzte")).toEqual([runId]);
    // Renamed by such a Worker (the fold it leaves is stale, so the rename clears it): the former
    // name is found by its fold, the new one after the next catalog publish.
    await env.DB.prepare("UPDATE workflows SET name = '\u00d6l' WHERE id = ?").bind(workflowId).run();
    expect(await search("\u00e4rzte")).toEqual([runId]);
    await seedCatalog();
    expect(await search("\u00f6L")).toEqual([runId]);
  });

  it("rejects out-of-range and unknown parameters with 400 naming them", async () => {
    for (const [query, path] of [
      ["limit=0", "limit"],
      ["limit=101", "limit"],
      ["page=0", "page"],
      // Only decimal digits are a number (Number() would read these as 16, 100 and 5).
      ["limit=0x10", "limit"],
      ["page=1e2", "page"],
      ["limit=%205", "limit"],
      ["status=sleeping", "status"],
      ["workflowId=not-a-uuid", "workflowId"],
      ["colour=blue", ""],
      // Repeated: not silently the first value.
      ["limit=5&limit=500", "limit"],
      ["status=failed&status=completed", "status"],
    ] as const) {
      const res = await get(`/api/v1/workflow-runs?${query}`, token);
      expect(res.status, query).toBe(400);
      const body = (await res.json()) as ErrorBody;
      if (path) expect(body.error.issues!.map((i) => i.path)).toContain(path);
      const value = query.split("=")[1]!;
      if ((path === "limit" || path === "page") && !query.includes("&"))
        expect(body.error.issues!.find((i) => i.path === path)?.message).toBe(
          /^\d+$/.test(value)
            ? // A number out of range says the range, not that it is not a number.
              `expected a whole number from 1 to ${path === "limit" ? 100 : 100_000}`
            : "expected a whole number in decimal digits",
        );
    }
  });

  it("security: a parameter whose percent-escapes are not UTF-8 is 400 invalid_encoding naming it, not a search for the escapes", async () => {
    for (const [query, path] of [
      ["search=%FF", "search"],
      ["search=%C3%28", "search"],
      ["limit=5&search=ok%E2%82", "search"],
      ["%FFname=1", "%FFname"],
    ] as const) {
      const res = await get(`/api/v1/workflow-runs?${query}`, token);
      expect(res.status, query).toBe(400);
      const body = (await res.json()) as ErrorBody;
      expect(body.error.code, query).toBe("invalid_encoding");
      expect(body.error.issues!.map((i) => i.path)).toEqual([path]);
    }
    // Valid UTF-8 escapes, a plus for a space and a literal percent sign's escape are fine.
    for (const query of ["search=%C3%A9t%C3%A9", "search=a+b", "search=100%25"]) {
      expect((await get(`/api/v1/workflow-runs?${query}`, token)).status, query).toBe(200);
    }
    // The Workflow API (Output's envelope) too.
    const output = await call("/workflow/runs?workflowType=%C3%28", { headers: { authorization: `Bearer ${outputKey}` } });
    expect(output.status).toBe(400);
    expect(((await output.json()) as { error: string; code: string }).code).toBe("invalid_encoding");
  });

  it("the dashboard counts agree with the list", async () => {
    const helloId = await workflowIdOf("hello");
    const dash = (await (await get(`/api/v1/workflow-runs/dashboard/${helloId}`, token)).json()) as {
      total: number;
      counts: Record<string, number>;
    };
    expect(dash.counts).toEqual({ scheduled: 0, running: 1, completed: 1, failed: 2, cancelled: 0, waiting: 0 });
    for (const [status, n] of Object.entries(dash.counts)) {
      const listed = (await (await get(`/api/v1/workflow-runs?workflowId=${helloId}&status=${status}&limit=100`, token)).json()) as {
        pagination: { total: number };
      };
      expect(listed.pagination.total, status).toBe(n);
    }
    expect(dash.total).toBe(4);
    expect((await get("/api/v1/workflow-runs/dashboard/not-a-uuid", token)).status).toBe(404);
  });

  it("ids are UUIDs in any letter case: an upper-case one names the same workflow or run, never nothing", async () => {
    const helloId = (await workflowIdOf("hello")).toUpperCase();
    const listed = (await (await get(`/api/v1/workflow-runs?workflowId=${helloId}`, token)).json()) as { data: unknown[] };
    expect(listed.data).toHaveLength(4);
    const dash = (await (await get(`/api/v1/workflow-runs/dashboard/${helloId}`, token)).json()) as { workflowId: string; total: number };
    expect(dash).toMatchObject({ workflowId: helloId.toLowerCase(), total: 4 });
    const runId = ids["hello:completed"]!;
    const detail = await get(`/api/v1/workflow-runs/${runId.toUpperCase()}`, token);
    expect(detail.status).toBe(200);
    expect(((await detail.json()) as { id: string }).id).toBe(runId);
  });

  it("detail shows the run with its activity runs, one per attempt; odd ids are 404", async () => {
    const runId = ids["hello:completed"]!;
    await env.DB.prepare(
      `INSERT INTO step_runs (id, run_id, organization_id, step_id, step_name, attempt, status, outputs, created_at, updated_at) VALUES
       (?, ?, ?, '1', 'composeGreeting', 1, 'failed', NULL, '2026-01-01T00:00:01.100Z', '2026-01-01T00:00:01.200Z'),
       (?, ?, ?, '1', 'composeGreeting', 2, 'completed', '"Hello, Ada!"', '2026-01-01T00:00:02.100Z', '2026-01-01T00:00:02.200Z'),
       (?, ?, ?, '2', 'count', 1, 'completed', '42', '2026-01-01T00:00:03.100Z', '2026-01-01T00:00:03.200Z'),
       (?, ?, ?, '3', 'list', 1, 'completed', '["a","b"]', '2026-01-01T00:00:04.100Z', '2026-01-01T00:00:04.200Z'),
       (?, ?, ?, '4', 'fields', 1, 'completed', '{"greeting":"Hi"}', '2026-01-01T00:00:05.100Z', '2026-01-01T00:00:05.200Z')`,
    )
      .bind(...[1, 2, 3, 4, 5].flatMap(() => [crypto.randomUUID(), runId, organizationId]))
      .run();
    const detail = (await (await get(`/api/v1/workflow-runs/${runId}`, token)).json()) as {
      id: string;
      status: string;
      activityRuns: Array<Record<string, unknown>>;
    };
    expect(detail).toMatchObject({ id: runId, status: "completed" });
    expect(detail.activityRuns.map((a) => [a.stepId, a.stepName, a.attempt, a.status, a.outputs])).toEqual([
      ["1", "composeGreeting", 1, "failed", null],
      // outputs are an object or null: a step's string, number or list comes as {value}.
      ["1", "composeGreeting", 2, "completed", { value: "Hello, Ada!" }],
      ["2", "count", 1, "completed", { value: 42 }],
      ["3", "list", 1, "completed", { value: ["a", "b"] }],
      ["4", "fields", 1, "completed", { greeting: "Hi" }],
    ]);
    for (const id of [crypto.randomUUID(), "..%2F..%2Fadmin", "x".repeat(500), "%E2%98%83"]) {
      expect((await get(`/api/v1/workflow-runs/${id}`, token)).status, id).toBe(404);
    }
  });

  it("security: a 404 quotes a long run id cut short, saying so, and never half of a character (detail and stream)", async () => {
    const { organizationId } = await seedOrganization();
    const token = await jwtFor(organizationId);
    // 😀 is two UTF-16 units, at the 100th and 101st: a cut at 100 left half of it in the message.
    const id = `${"x".repeat(99)}${encodeURIComponent("😀")}${"y".repeat(4_000)}`;
    for (const path of [`/api/v1/workflow-runs/${id}`, `/api/v1/workflow-runs/${id}/stream`]) {
      const res = await get(path, token);
      expect(res.status).toBe(404);
      const { code, message } = ((await res.json()) as ErrorBody).error;
      expect(code).toBe("run_not_found");
      expect(message.isWellFormed(), JSON.stringify(message.slice(90, 130))).toBe(true);
      expect(message).toContain("more characters)");
      expect(message.length).toBeLessThan(200);
    }
  });
});

describe("Workflow Runs API: a prompt workflow's runs", () => {
  it("are listed with its wf_ id, and that id filters the list, counts on the dashboard and cancels them", async () => {
    const { organizationId } = await seedOrganization();
    const token = await jwtFor(organizationId);
    const promptWorkflowId = await createPromptWorkflow(organizationId);
    const runId = crypto.randomUUID();
    await env.DB.prepare(
      `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, temporal_run_id, status, input, created_at, updated_at)
       VALUES (?, ?, ?, 'wf', ?, NULL, 'scheduled', '{}', '2026-01-07T00:00:00.000Z', '2026-01-07T00:00:00.000Z')`,
    )
      .bind(runId, organizationId, promptWorkflowId, `${promptWorkflowId}-${runId}`)
      .run();
    const listed = (await (await get("/api/v1/workflow-runs", token)).json()) as { data: Array<{ id: string; workflowId: string }> };
    expect(listed.data.map((r) => [r.id, r.workflowId])).toEqual([[runId, promptWorkflowId]]);
    const filtered = await get(`/api/v1/workflow-runs?workflowId=${promptWorkflowId}`, token);
    expect(filtered.status).toBe(200);
    expect(((await filtered.json()) as { data: Array<{ id: string }> }).data.map((r) => r.id)).toEqual([runId]);
    const dashboard = await get(`/api/v1/workflow-runs/dashboard/${promptWorkflowId}`, token);
    expect(dashboard.status).toBe(200);
    expect(await dashboard.json()).toMatchObject({ workflowId: promptWorkflowId, total: 1, counts: { scheduled: 1 } });
    const cancelled = await cancelRuns<{ results: Array<{ runId: string; status: string }>; remaining: number }>(token, {
      workflowId: promptWorkflowId,
    });
    expect(cancelled).toMatchObject({ results: [{ runId, status: "not_eligible" }], remaining: 1 });
    // Anything else is still refused: a malformed id is 400 (404 on the dashboard's path), as before.
    for (const bad of ["wf_", "WF_ABCDEF12", "wf_abc$def", "wf_../x"]) {
      expect((await get(`/api/v1/workflow-runs?workflowId=${encodeURIComponent(bad)}`, token)).status, bad).toBe(400);
      expect((await get(`/api/v1/workflow-runs/dashboard/${encodeURIComponent(bad)}`, token)).status, bad).toBe(404);
    }
  });
});

describe("Workflow Runs API: cancel", () => {
  it("one outcome per run: already_completed, not_eligible, not_found, and error when Temporal cannot be reached", async () => {
    await seedCatalog();
    const { organizationId } = await seedOrganization();
    const other = await seedOrganization();
    const token = await jwtFor(organizationId);
    const completed = await insertRun(organizationId, "hello", "completed", "2026-01-02T00:00:00.000Z");
    const failed = await insertRun(organizationId, "hello", "failed", "2026-01-02T00:00:01.000Z");
    const cancelled = await insertRun(organizationId, "hello", "cancelled", "2026-01-02T00:00:02.000Z");
    const unstarted = await insertRun(organizationId, "hello", "scheduled", "2026-01-02T00:00:03.000Z", null);
    const running = await insertRun(organizationId, "hello", "running", "2026-01-02T00:00:04.000Z");
    const foreign = await insertRun(other.organizationId, "hello", "running", "2026-01-02T00:00:05.000Z");
    const unknown = crypto.randomUUID();
    const res = await call("/api/v1/workflow-runs/cancel", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ runIds: [completed, failed, cancelled, unstarted, running, foreign, unknown, "bogus"], reason: "tidy up" }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { results: Array<{ runId: string; status: string }>; summary: Record<string, number> };
    const outcome = Object.fromEntries(body.results.map((r) => [r.runId, r.status]));
    expect(outcome).toEqual({
      [completed]: "already_completed",
      [failed]: "already_completed",
      [cancelled]: "not_eligible",
      [unstarted]: "not_eligible",
      [running]: "error",
      [foreign]: "not_found",
      [unknown]: "not_found",
      bogus: "not_found",
    });
    expect(body.summary).toEqual({ cancelled: 0, already_completed: 2, not_eligible: 2, not_found: 3, error: 1 });
  });

  it("an upper-case run or workflow id names the same runs (not not_found while they go on); one run named twice is one outcome", async () => {
    await seedCatalog();
    const { organizationId } = await seedOrganization();
    const token = await jwtFor(organizationId);
    const completed = await insertRun(organizationId, "hello", "completed", "2026-01-03T00:00:00.000Z");
    const running = await insertRun(organizationId, "two_steps", "running", "2026-01-03T00:00:01.000Z");
    const cancel = (body: unknown) => cancelRuns(token, body);
    const byRunIds = await cancel({ runIds: [completed.toUpperCase(), completed] });
    expect(byRunIds.results).toEqual([{ runId: completed.toUpperCase(), status: "already_completed" }]);
    // The running run's cancel reaches for the host (none in edge tests): "error", not "not_found".
    const byWorkflow = await cancel({ workflowId: (await workflowIdOf("two_steps")).toUpperCase() });
    expect(byWorkflow.results.map((r) => [r.runId, r.status])).toEqual([[running, "error"]]);
  });

  it("cancel by workflowId moves on: runs asked before are not taken again, `remaining` counts the rest, a reset run is asked again", async () => {
    await seedCatalog();
    const { organizationId } = await seedOrganization();
    const token = await jwtFor(organizationId);
    const workflowId = await workflowIdOf("two_steps");
    // 101 running runs, and one not started in Temporal yet, which goes after them (it can only be not_eligible).
    const unstarted = await insertRun(organizationId, "two_steps", "scheduled", "2026-01-05T00:00:00.000Z", null);
    await env.DB.batch(
      Array.from({ length: 101 }, (_, i) => {
        const id = crypto.randomUUID();
        return env.DB.prepare(
          `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, temporal_run_id, status, input, created_at, updated_at)
           VALUES (?, ?, ?, 'two_steps', ?, 'r-1', 'running', '{}', ?, ?)`,
        ).bind(
          id,
          organizationId,
          workflowId,
          `two_steps-${id}`,
          `2026-01-05T00:01:${String(i % 60).padStart(2, "0")}.${String(i).padStart(3, "0")}Z`,
          "2026-01-05T00:00:00.000Z",
        );
      }),
    );
    // The host takes each cancellation; the rows stay `running` until each run's cleanup ends it.
    const hostCancels: string[] = [];
    const restore = scriptHost((_request, path) => {
      hostCancels.push(path);
      return Response.json({ status: "cancel_requested" });
    });
    type Answer = { results: Array<{ runId: string; status: string }>; summary: Record<string, number>; remaining: number };
    const cancel = () => cancelRuns<Answer>(token, { workflowId });
    try {
      const first = await cancel();
      expect(first.summary.cancelled).toBe(100);
      expect(first.results.map((r) => r.runId)).not.toContain(unstarted);
      expect(first.remaining).toBe(2); // one running run not asked yet, and the unstarted one
      const second = await cancel();
      expect(second.summary).toEqual({ cancelled: 1, already_completed: 0, not_eligible: 1, not_found: 0, error: 0 });
      expect(second.results.at(-1)).toEqual({ runId: unstarted, status: "not_eligible", message: "the run has no Temporal workflow yet" });
      const reached = new Set([...first.results, ...second.results].filter((r) => r.status === "cancelled").map((r) => r.runId));
      expect(reached.size).toBe(101);
      expect(hostCancels).toHaveLength(101);
      expect(second.remaining).toBe(1); // the unstarted run, until Temporal has it

      // A reset gave one asked run a new Temporal run: that one is open and not asked yet.
      const resetRun = first.results[0]!.runId;
      await env.DB.prepare("UPDATE runs SET temporal_run_id = 'r-2' WHERE id = ?").bind(resetRun).run();
      const third = await cancel();
      expect(third.results.filter((r) => r.status === "cancelled").map((r) => r.runId)).toEqual([resetRun]);
    } finally {
      restore();
    }
  });

  it("a run cancelled by id is not taken again by a cancel by workflowId; one the host could not cancel is", async () => {
    await seedCatalog();
    const { organizationId } = await seedOrganization();
    const token = await jwtFor(organizationId);
    const asked = await insertRun(organizationId, "approval", "running", "2026-01-06T00:00:00.000Z");
    const refused = await insertRun(organizationId, "approval", "running", "2026-01-06T00:00:01.000Z");
    const cancel = (body: unknown) => cancelRuns(token, body);
    const restore = scriptHost(() => Response.json({ status: "cancel_requested" }));
    try {
      expect((await cancel({ runIds: [asked.toUpperCase()] })).results).toEqual([{ runId: asked.toUpperCase(), status: "cancelled" }]);
    } finally {
      restore();
    }
    // No host now: the other run's cancel fails ("error"), so it stays open and not asked.
    const byWorkflow = await cancel({ workflowId: await workflowIdOf("approval") });
    expect(byWorkflow.results.map((r) => [r.runId, r.status])).toEqual([[refused, "error"]]);
    expect(byWorkflow.remaining).toBe(1);
  });

  it("100 run ids are read in two statements, without the runs' inputs and outputs, and each still gets its outcome", async () => {
    await seedCatalog();
    const { organizationId } = await seedOrganization();
    const token = await jwtFor(organizationId);
    const completed = await insertRun(organizationId, "hello", "completed", "2026-01-04T00:00:00.000Z");
    const cancelled = await insertRun(organizationId, "hello", "cancelled", "2026-01-04T00:00:01.000Z");
    const runIds = [...Array.from({ length: 97 }, () => crypto.randomUUID()), completed, cancelled, "bogus"];
    const statements: string[] = [];
    const restore = interceptD1InPlace(env.DB, (c) => {
      if (c.kind === "statement" && /from "runs"/i.test(c.sql)) statements.push(c.sql);
    });
    let body: { results: Array<{ runId: string; status: string }>; summary: Record<string, number> };
    try {
      const res = await call("/api/v1/workflow-runs/cancel", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ runIds }),
      });
      expect(res.status).toBe(200);
      body = (await res.json()) as typeof body;
    } finally {
      restore();
    }
    expect(statements).toHaveLength(2); // D1 binds at most 100 parameters per statement
    for (const sql of statements) expect(sql).not.toMatch(/"(input|output|error_details)"/);
    expect(body.results.map((r) => r.runId)).toEqual(runIds);
    expect(body.summary).toEqual({ cancelled: 0, already_completed: 1, not_eligible: 1, not_found: 98, error: 0 });
  });

  it("needs exactly one of runIds and workflowId; reason at most 500 characters", async () => {
    const { organizationId } = await seedOrganization();
    const token = await jwtFor(organizationId);
    const cancel = (body: unknown) =>
      call("/api/v1/workflow-runs/cancel", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    expect((await cancel({})).status).toBe(400);
    expect((await cancel({ runIds: [crypto.randomUUID()], workflowId: crypto.randomUUID() })).status).toBe(400);
    expect((await cancel({ runIds: [crypto.randomUUID()], reason: "x".repeat(501) })).status).toBe(400);
    expect((await cancel({ runIds: [] })).status).toBe(400);
    const byWorkflow = await cancel({ workflowId: crypto.randomUUID() });
    expect(((await byWorkflow.json()) as { results: unknown[] }).results).toEqual([]);
  });
});

describe("Workflow Runs API: execute validation", () => {
  it("400 for a missing or malformed workflowId, bad inputs JSON, bad env names; 404 for an unknown workflow", async () => {
    await seedCatalog();
    const { organizationId } = await seedOrganization();
    const token = await jwtFor(organizationId);
    const execute = (fields: Record<string, string>) => {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.set(k, v);
      return call("/api/v1/workflow-runs/execute", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: form });
    };
    const helloId = await workflowIdOf("hello");
    expect((await execute({ inputs: "{}" })).status).toBe(400);
    expect((await execute({ workflowId: "hello" })).status).toBe(400);
    const badJson = await execute({ workflowId: helloId, inputs: "{nope" });
    expect(((await badJson.json()) as ErrorBody).error.code).toBe("invalid_json");
    const badEnv = await execute({ workflowId: helloId, inputs: '{"name":"Ada"}', envs: '{"1BAD":"x"}' });
    expect(badEnv.status).toBe(400);
    const badInput = await execute({ workflowId: helloId, inputs: '{"name":42}' });
    expect(((await badInput.json()) as ErrorBody).error.code).toBe("invalid_input");
    // An upper-case id names the same workflow: past the id, its input schema answers (not 404).
    const upper = await execute({ workflowId: helloId.toUpperCase(), inputs: '{"name":42}' });
    expect(((await upper.json()) as ErrorBody).error.code).toBe("invalid_input");
    const unknown = await execute({ workflowId: crypto.randomUUID(), inputs: "{}" });
    expect(unknown.status).toBe(404);
    // Valid: the host is unreachable, so the run is accepted (202, scheduled) and its DO retries the start.
    const down = await execute({ workflowId: helloId, inputs: '{"name":"Ada"}', envs: '{"GREETING":"Hi"}' });
    expect(down.status).toBe(202);
    const rows = await env.DB.prepare("SELECT status, env_names FROM runs WHERE organization_id = ?").bind(organizationId).all();
    expect(rows.results).toEqual([{ status: "scheduled", env_names: '["GREETING"]' }]);
  });
});

describe("Workflow Runs API: JWT keys", () => {
  it("verifies ES256 and RS256 tokens against JWT_PUBLIC_KEY (PEM); HS256 only ever with JWT_SECRET", async () => {
    const { exportSPKI, generateKeyPair } = await import("jose");
    const { verifyJwt } = await import("../../src/middleware/service-auth/index.ts");
    for (const alg of ["ES256", "RS256"]) {
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
      const pemEnv = { ...env, JWT_PUBLIC_KEY: await exportSPKI(publicKey), JWT_JWKS_URL: "" } as Env;
      const token = await new SignJWT({ org_id: "org_pem" }).setProtectedHeader({ alg }).setExpirationTime("5m").sign(privateKey);
      expect((await verifyJwt(pemEnv, token)).org_id).toBe("org_pem");
      const other = await generateKeyPair(alg);
      const forged = await new SignJWT({ org_id: "org_pem" }).setProtectedHeader({ alg }).setExpirationTime("5m").sign(other.privateKey);
      await expect(verifyJwt(pemEnv, forged)).rejects.toThrow();
      // HS256 is checked against JWT_SECRET only: never against the public key's bytes.
      expect((await verifyJwt(pemEnv, await jwtFor("org_pem"))).org_id).toBe("org_pem");
      const pemAsSecret = await new SignJWT({ org_id: "org_pem" })
        .setProtectedHeader({ alg: "HS256" })
        .setExpirationTime("5m")
        .sign(new TextEncoder().encode(pemEnv.JWT_PUBLIC_KEY));
      await expect(verifyJwt(pemEnv, pemAsSecret)).rejects.toThrow();
      // An asymmetric token with no public key configured is refused.
      await expect(verifyJwt({ ...env, JWT_PUBLIC_KEY: "", JWT_JWKS_URL: "" } as Env, token)).rejects.toThrow(/needs JWT_JWKS_URL/);
    }
  });

  it("checks issuer and audience when they are configured", async () => {
    const { verifyJwt } = await import("../../src/middleware/service-auth/index.ts");
    const strict = { ...env, JWT_ISSUER: "https://auth.example", JWT_AUDIENCE: "outrider" } as Env;
    const good = await jwtFor("org_x", { claims: { iss: "https://auth.example", aud: "outrider" } });
    expect((await verifyJwt(strict, good)).org_id).toBe("org_x");
    await expect(verifyJwt(strict, await jwtFor("org_x", { claims: { iss: "https://evil.example", aud: "outrider" } }))).rejects.toThrow();
    await expect(verifyJwt(strict, await jwtFor("org_x", { claims: { iss: "https://auth.example" } }))).rejects.toThrow();
  });
});

describe("Workflow Runs API: execute (security)", () => {
  let token: string;
  let helloId: string;
  beforeAll(async () => {
    await seedCatalog();
    const { organizationId } = await seedOrganization();
    token = await jwtFor(organizationId);
    helloId = await workflowIdOf("hello");
  });
  const executeForm = (fields: Array<[string, string]>) => {
    const form = new FormData();
    for (const [k, v] of fields) form.append(k, v);
    return call("/api/v1/workflow-runs/execute", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: form });
  };
  const executeJson = (body: string | Uint8Array) =>
    call("/api/v1/workflow-runs/execute", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body,
    });

  it("a body over 1 MiB → 413 payload_too_large on execute, its stream and cancel, in every encoding; nothing started", async () => {
    const big = "x".repeat(1024 * 1024 + 1);
    const json = JSON.stringify({ workflowId: helloId, inputs: { name: big } });
    const form = new FormData();
    form.append("workflowId", helloId);
    form.append("inputs", JSON.stringify({ name: big }));
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs").first<number>("n");
    const answers = [
      await postAs(token, "/api/v1/workflow-runs/execute", json, "application/json"),
      await postAs(token, "/api/v1/workflow-runs/execute/stream", json, "application/json"),
      await postAs(token, "/api/v1/workflow-runs/execute", `workflowId=${helloId}&inputs=${big}`, "application/x-www-form-urlencoded"),
      await call("/api/v1/workflow-runs/execute", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: form }),
      await postAs(
        token,
        "/api/v1/workflow-runs/cancel",
        JSON.stringify({ runIds: [crypto.randomUUID()], reason: big }),
        "application/json",
      ),
    ];
    for (const res of answers) {
      const e = await statusAndError(res);
      expect([e.status, e.code]).toEqual([413, "payload_too_large"]);
    }
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM runs").first<number>("n")).toBe(before);
  });

  it("a field sent twice → 400 naming it (never the last one silently)", async () => {
    for (const name of ["workflowId", "inputs", "envs"]) {
      const fields: Array<[string, string]> = [
        ["workflowId", helloId],
        ["inputs", '{"name":"Ada"}'],
        ["envs", "{}"],
      ];
      fields.push(fields.find(([n]) => n === name)!);
      const e = await statusAndError(await executeForm(fields));
      expect([e.status, e.code]).toEqual([400, "invalid_request"]);
      expect(e.message).toContain(`field ${name} appears more than once`);
      expect(e.issues).toEqual([{ path: name, message: "duplicate field" }]);
    }
  });

  it("__proto__, constructor and prototype are refused with a 400 as field names, env names and input keys", async () => {
    for (const name of ["__proto__", "constructor", "prototype"]) {
      const asField = await statusAndError(
        await executeForm([
          ["workflowId", helloId],
          ["inputs", '{"name":"Ada"}'],
          [name, "x"],
        ]),
      );
      expect([asField.status, asField.code, asField.issues?.[0]?.path]).toEqual([400, "invalid_request", name]);
      const asEnv = await statusAndError(
        await executeForm([
          ["workflowId", helloId],
          ["inputs", '{"name":"Ada"}'],
          ["envs", `{"${name}":"x"}`],
        ]),
      );
      expect([asEnv.status, asEnv.code, asEnv.issues?.[0]?.path]).toEqual([400, "invalid_request", `envs.${name}`]);
      const asInput = await statusAndError(
        await executeForm([
          ["workflowId", helloId],
          ["inputs", `{"name":"Ada","${name}":{"x":1}}`],
        ]),
      );
      expect([asInput.status, asInput.code, asInput.issues?.[0]?.path]).toEqual([400, "invalid_request", `inputs.${name}`]);
      const inJson = await statusAndError(await executeJson(`{"workflowId":"${helloId}","inputs":{"name":"Ada"},"envs":{"${name}":"x"}}`));
      expect([inJson.status, inJson.issues?.[0]?.path]).toEqual([400, `envs.${name}`]);
      expect(asEnv.message).toContain("reserved name");
    }
  });

  it("deep JSON in a multipart field or a JSON body → 400 json_too_deep; invalid UTF-8 in a JSON body → 400 invalid_json", async () => {
    const deep = `{"name":"Ada","x":${"[".repeat(5_000)}${"]".repeat(5_000)}}`;
    const inField = await statusAndError(
      await executeForm([
        ["workflowId", helloId],
        ["inputs", deep],
      ]),
    );
    expect([inField.status, inField.code]).toEqual([400, "json_too_deep"]);
    expect(inField.message).toContain("field inputs");
    const inBody = await statusAndError(await executeJson(`{"workflowId":"${helloId}","inputs":${deep}}`));
    expect([inBody.status, inBody.code]).toEqual([400, "json_too_deep"]);
    const bytes = new Uint8Array([
      ...new TextEncoder().encode(`{"workflowId":"${helloId}","inputs":{"name":"`),
      0xff,
      0xfe,
      ...new TextEncoder().encode('"}}'),
    ]);
    const badUtf8 = await statusAndError(await executeJson(bytes));
    expect([badUtf8.status, badUtf8.code]).toEqual([400, "invalid_json"]);
  });
});

/** A multipart/form-data body built byte by byte (FormData would re-encode a string as UTF-8). */
function multipartBody(parts: Array<{ name: string | Uint8Array; value: string | Uint8Array; filename?: string }>) {
  const boundary = `b-${crypto.randomUUID()}`;
  const enc = new TextEncoder();
  const bytes = (v: string | Uint8Array) => (typeof v === "string" ? enc.encode(v) : v);
  const chunks: Uint8Array[] = [];
  for (const part of parts) {
    chunks.push(enc.encode(`--${boundary}\r\nContent-Disposition: form-data; name="`), bytes(part.name), enc.encode('"'));
    if (part.filename !== undefined) chunks.push(enc.encode(`; filename="${part.filename}"\r\nContent-Type: application/octet-stream`));
    chunks.push(enc.encode("\r\n\r\n"), bytes(part.value), enc.encode("\r\n"));
  }
  chunks.push(enc.encode(`--${boundary}--\r\n`));
  const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return { body, type: `multipart/form-data; boundary=${boundary}` };
}

/** Valid UTF-8 around `bad`, the bytes under test: `{"name":"Ad<bad>a"}`. */
const inputsWith = (bad: number[]) =>
  new Uint8Array([...new TextEncoder().encode('{"name":"Ad'), ...bad, ...new TextEncoder().encode('a"}')]);

/** Byte sequences that are not UTF-8: a stray continuation byte, 0xFF, an overlong "/", a lone surrogate, a cut-off "€". */
const NOT_UTF8: Array<[string, number[]]> = [
  ["stray continuation byte", [0x80]],
  ["0xFF", [0xff]],
  ["overlong encoding", [0xc0, 0xaf]],
  ["UTF-16 surrogate", [0xed, 0xa0, 0x80]],
  ["truncated sequence", [0xe2, 0x82]],
];

/** A fresh organization with a Workflow Runs API token, and the `hello` catalog id (each describe below has its own). */
async function formEncodingsFixture() {
  await seedCatalog();
  const { organizationId } = await seedOrganization();
  return { organizationId, token: await jwtFor(organizationId), helloId: await workflowIdOf("hello") };
}

describe("Workflow Runs API: execute form encodings (happy path)", () => {
  let token: string;
  let helloId: string;
  beforeAll(async () => {
    ({ token, helloId } = await formEncodingsFixture());
  });
  const post = (body: BodyInit, type: string, headers?: Record<string, string>) =>
    postAs(token, "/api/v1/workflow-runs/execute", body, type, headers);
  const inputOf = async (res: Response) => {
    const id = ((await res.json()) as { workflowRun: { id: string } }).workflowRun.id;
    return JSON.parse((await env.DB.prepare("SELECT input FROM runs WHERE id = ?").bind(id).first<string>("input"))!) as unknown;
  };
  const name = "Adá Łukasz 山田 😀 \uFFFD"; // 2-, 3- and 4-byte UTF-8, and a U+FFFD the client really sent

  it("non-ASCII text in multipart fields arrives exactly as sent", async () => {
    const { body, type } = multipartBody([
      { name: "workflowId", value: helloId },
      { name: "inputs", value: JSON.stringify({ name }) },
      { name: "envs", value: '{"GREETING":"¡Hola!"}' },
    ]);
    const res = await post(body, type);
    expect(res.status).toBe(202);
    expect(await inputOf(res)).toEqual({ name });
  });

  it("urlencoded fields: percent-encoded UTF-8, raw UTF-8 bytes and + for spaces", async () => {
    const encoded = `workflowId=${helloId}&inputs=${encodeURIComponent(JSON.stringify({ name })).replaceAll("%20", "+")}`;
    const res = await post(encoded, "application/x-www-form-urlencoded");
    expect(res.status).toBe(202);
    expect(await inputOf(res)).toEqual({ name });
    const raw = new TextEncoder().encode(`workflowId=${helloId}&inputs=${JSON.stringify({ name: "Adá" })}`);
    const rawRes = await post(raw, "application/x-www-form-urlencoded;charset=UTF-8");
    expect(rawRes.status).toBe(202);
    expect(await inputOf(rawRes)).toEqual({ name: "Adá" });
  });

  it("the form media types in any letter case (media types are case-insensitive); an Idempotency-Key replay does not care either", async () => {
    const { body, type } = multipartBody([
      { name: "workflowId", value: helloId },
      { name: "inputs", value: JSON.stringify({ name: "Upper" }) },
    ]);
    const upper = type.replace("multipart/form-data", "Multipart/Form-Data");
    const res = await post(body, upper);
    expect(res.status).toBe(202);
    expect(await inputOf(res)).toEqual({ name: "Upper" });
    const urlencoded = await post(`workflowId=${helloId}&inputs=%7B%22name%22%3A%22Url%22%7D`, "Application/X-WWW-Form-Urlencoded");
    expect(urlencoded.status).toBe(202);
    expect(await inputOf(urlencoded)).toEqual({ name: "Url" });

    const key = `case-${crypto.randomUUID()}`;
    const first = await postAs(token, "/api/v1/workflow-runs/execute", body, type, { "idempotency-key": key });
    const again = await postAs(token, "/api/v1/workflow-runs/execute", body, upper, { "idempotency-key": key });
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const idOf = async (r: Response) => ((await r.json()) as { workflowRun: { id: string } }).workflowRun.id;
    expect(await idOf(again)).toBe(await idOf(first));
  });

  it("an Idempotency-Key replay after the workflow was unpublished (a host deploy without it) replays the run; a new start is 404", async () => {
    // A catalog entry of its own (a copy of hello's), so that unpublishing it touches no other test.
    const id = crypto.randomUUID();
    await env.DB.prepare(
      `INSERT INTO workflows (id, organization_id, name, kind, description, input_schema, output_schema, handlers, published)
       SELECT ?, organization_id, ?, kind, description, input_schema, output_schema, handlers, 1 FROM workflows WHERE id = ?`,
    )
      .bind(id, `retiring_${id.slice(0, 8)}`, helloId)
      .run();
    const form = `workflowId=${id}&inputs=${encodeURIComponent(JSON.stringify({ name: "Ada" }))}`;
    const key = `unpublished-${crypto.randomUUID()}`;
    const first = await post(form, "application/x-www-form-urlencoded", { "idempotency-key": key });
    expect(first.status).toBe(202);
    const runOf = async (r: Response) => ((await r.json()) as { workflowRun: { id: string } }).workflowRun.id;
    const runId = await runOf(first);
    await env.DB.prepare("UPDATE workflows SET published = 0 WHERE id = ?").bind(id).run();
    forgetCachedCatalog();
    clearWorkflowNameCache(); // an isolate that never saw the workflow's name
    const again = await post(form, "application/x-www-form-urlencoded", { "idempotency-key": key });
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await runOf(again)).toBe(runId);
    const fresh = await post(form, "application/x-www-form-urlencoded", { "idempotency-key": `new-${crypto.randomUUID()}` });
    expect([fresh.status, ((await fresh.json()) as ErrorBody).error.code]).toEqual([404, "workflow_not_found"]);
    expect((await post(form, "application/x-www-form-urlencoded")).status).toBe(404);
  });

  it("a FormData body from the platform (its own boundary and headers) still works", async () => {
    const form = new FormData();
    form.set("workflowId", helloId);
    form.set("inputs", JSON.stringify({ name }));
    const res = await call("/api/v1/workflow-runs/execute", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: form });
    expect(res.status).toBe(202);
    expect(await inputOf(res)).toEqual({ name });
  });
});

describe("Workflow Runs API: execute form encodings (errors)", () => {
  let token: string;
  let helloId: string;
  beforeAll(async () => {
    ({ token, helloId } = await formEncodingsFixture());
  });
  const post = (body: BodyInit, type: string) => postAs(token, "/api/v1/workflow-runs/execute", body, type);

  it("a multipart body that is not well formed is 400 invalid_request, not a 500", async () => {
    const { body } = multipartBody([{ name: "workflowId", value: helloId }]);
    for (const [what, type, bytes] of [
      ["no boundary parameter", "multipart/form-data", body],
      ["another boundary", "multipart/form-data; boundary=elsewhere", body],
      ["cut off before its closing boundary", multipartBody([]).type, body.subarray(0, body.length - 20)],
    ] as const) {
      const e = await statusAndError(await post(bytes, type));
      expect([what, e.status, e.code]).toEqual([what, 400, "invalid_request"]);
    }
  });

  it("a body that is neither a form nor JSON (text/plain, or no Content-Type) is 415 unsupported_media_type naming the types taken; nothing starts", async () => {
    const { organizationId, token, helloId } = await formEncodingsFixture();
    const json = new TextEncoder().encode(JSON.stringify({ workflowId: helloId, inputs: { name: "Ada" } }));
    const sent = [
      ["text/plain", await postAs(token, "/api/v1/workflow-runs/execute", json, "text/plain")],
      ["application/xml", await postAs(token, "/api/v1/workflow-runs/execute/stream", json, "application/xml")],
      // A Uint8Array body gets no Content-Type of its own.
      ["none", await call("/api/v1/workflow-runs/execute", { method: "POST", headers: { authorization: `Bearer ${token}` }, body: json })],
    ] as const;
    for (const [what, res] of sent) {
      const e = await statusAndError(res);
      expect([what, e.status, e.code], what).toEqual([what, 415, "unsupported_media_type"]);
      expect(e.message, what).toContain("multipart/form-data, application/x-www-form-urlencoded or application/json");
    }
    const runs = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?")
      .bind(organizationId)
      .first<{ n: number }>();
    expect(runs?.n).toBe(0);
  });

  it("a form or JSON body with a Content-Encoding (gzip, or plain bytes labelled br) is 415 unsupported_media_type; nothing starts", async () => {
    const { organizationId, token, helloId } = await formEncodingsFixture();
    const json = JSON.stringify({ workflowId: helloId, inputs: { name: "Ada" } });
    const gzipped = new Uint8Array(await new Response(new Blob([json]).stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer());
    const sent = [
      ["gzip json", await postAs(token, "/api/v1/workflow-runs/execute", gzipped, "application/json", { "content-encoding": "gzip" })],
      [
        "br form",
        await postAs(
          token,
          "/api/v1/workflow-runs/execute/stream",
          `workflowId=${helloId}&inputs[name]=Ada`,
          "application/x-www-form-urlencoded",
          { "content-encoding": "br" },
        ),
      ],
    ] as const;
    for (const [what, res] of sent) {
      const e = await statusAndError(res);
      expect([what, e.status, e.code], what).toEqual([what, 415, "unsupported_media_type"]);
    }
    const runs = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?")
      .bind(organizationId)
      .first<{ n: number }>();
    expect(runs?.n).toBe(0);
  });

  it("a file part is refused as before: 400 invalid_request naming the field (its bytes are never decoded)", async () => {
    const { body, type } = multipartBody([
      { name: "workflowId", value: helloId },
      { name: "inputs", value: new Uint8Array([0xff, 0xfe, 0x00, 0x80]), filename: "inputs.bin" },
    ]);
    const e = await statusAndError(await post(body, type));
    expect([e.status, e.code, e.message]).toEqual([400, "invalid_request", "field inputs must be text, not a file"]);
  });
});

describe("Workflow Runs API: execute form encodings (security)", () => {
  let token: string;
  let organizationId: string;
  let helloId: string;
  beforeAll(async () => {
    ({ organizationId, token, helloId } = await formEncodingsFixture());
  });
  const post = (path: string, body: BodyInit, type: string, headers?: Record<string, string>) => postAs(token, path, body, type, headers);
  const count = async (table: string) =>
    env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE organization_id = ?`).bind(organizationId).first<number>("n");

  it("a multipart text field that is not UTF-8 → 400 invalid_encoding naming it, on both execute routes; nothing started", async () => {
    for (const path of ["/api/v1/workflow-runs/execute", "/api/v1/workflow-runs/execute/stream"]) {
      for (const [what, bad] of NOT_UTF8) {
        const { body, type } = multipartBody([
          { name: "workflowId", value: helloId },
          { name: "inputs", value: inputsWith(bad) },
        ]);
        const e = await statusAndError(await post(path, body, type));
        expect([what, e.status, e.code]).toEqual([what, 400, "invalid_encoding"]);
        expect(e.message).toContain("field inputs is not valid UTF-8");
        expect(e.issues).toEqual([{ path: "inputs", message: "not valid UTF-8" }]);
      }
    }
    const badId = multipartBody([
      { name: "workflowId", value: new Uint8Array([...new TextEncoder().encode(helloId), 0xff]) },
      { name: "inputs", value: '{"name":"Ada"}' },
    ]);
    expect((await statusAndError(await post("/api/v1/workflow-runs/execute", badId.body, badId.type))).issues).toEqual([
      { path: "workflowId", message: "not valid UTF-8" },
    ]);
    const badEnvs = multipartBody([
      { name: "workflowId", value: helloId },
      { name: "inputs", value: '{"name":"Ada"}' },
      { name: "envs", value: new Uint8Array([...new TextEncoder().encode('{"GREETING":"'), 0xc3, 0x28, 0x22, 0x7d]) },
    ]);
    expect((await statusAndError(await post("/api/v1/workflow-runs/execute", badEnvs.body, badEnvs.type))).code).toBe("invalid_encoding");
    expect(await count("runs")).toBe(0);
  });

  it("a field name that is not UTF-8 → 400 invalid_encoding (never a name with U+FFFD in it)", async () => {
    const { body, type } = multipartBody([
      { name: "workflowId", value: helloId },
      { name: new Uint8Array([0x69, 0x6e, 0xff]), value: '{"name":"Ada"}' },
    ]);
    const e = await statusAndError(await post("/api/v1/workflow-runs/execute", body, type));
    expect([e.status, e.code]).toEqual([400, "invalid_encoding"]);
    const url = await statusAndError(
      await post("/api/v1/workflow-runs/execute", `workflowId=${helloId}&in%FFputs=x`, "application/x-www-form-urlencoded"),
    );
    expect([url.status, url.code]).toEqual([400, "invalid_encoding"]);
    expect(await count("runs")).toBe(0);
  });

  it("urlencoded: inputs=%FF, an overlong %C0%AF and raw bytes that are not UTF-8 → 400 invalid_encoding; nothing started", async () => {
    const cases: Array<[string, BodyInit]> = [
      ["%FF", `workflowId=${helloId}&inputs=%FF`],
      ["percent-encoded in JSON", `workflowId=${helloId}&inputs=%7B%22name%22%3A%22Ad%C3%28a%22%7D`],
      ["overlong", `workflowId=${helloId}&inputs=%C0%AF`],
      ["raw byte", new Uint8Array([...new TextEncoder().encode(`workflowId=${helloId}&inputs=`), ...inputsWith([0xff])])],
    ];
    for (const [what, body] of cases) {
      const e = await statusAndError(await post("/api/v1/workflow-runs/execute", body, "application/x-www-form-urlencoded"));
      expect([what, e.status, e.code, e.issues?.[0]?.path]).toEqual([what, 400, "invalid_encoding", "inputs"]);
    }
    expect(await count("runs")).toBe(0);
  });

  it("with an Idempotency-Key: 400 invalid_encoding, no key claimed and no run, so a corrected retry with the same key starts", async () => {
    const key = `enc-${crypto.randomUUID()}`;
    const bad = multipartBody([
      { name: "workflowId", value: helloId },
      { name: "inputs", value: inputsWith([0xff]) },
    ]);
    const e = await statusAndError(await post("/api/v1/workflow-runs/execute", bad.body, bad.type, { "idempotency-key": key }));
    expect([e.status, e.code]).toEqual([400, "invalid_encoding"]);
    // The same bytes with U+FFFD where the bad byte was: not the same request, and nothing was claimed for the key.
    const other = await statusAndError(
      await post("/api/v1/workflow-runs/execute", `workflowId=${helloId}&inputs=%FF%FE`, "application/x-www-form-urlencoded", {
        "idempotency-key": key,
      }),
    );
    expect([other.status, other.code]).toEqual([400, "invalid_encoding"]);
    expect([await count("idempotency_keys"), await count("runs")]).toEqual([0, 0]);
    const good = multipartBody([
      { name: "workflowId", value: helloId },
      { name: "inputs", value: '{"name":"Ada"}' },
    ]);
    expect((await post("/api/v1/workflow-runs/execute", good.body, good.type, { "idempotency-key": key })).status).toBe(202);
    expect([await count("idempotency_keys"), await count("runs")]).toEqual([1, 1]);
  });
});

describe("POST /api/v1/workflow-runs/execute: the answer once the 15-minute wait is over", () => {
  it("202 success for a run still going, waiting for a signal included; 200 for one that ended, success only if it completed", () => {
    const answers = Object.fromEntries(WORKFLOW_RUN_STATUSES.map((status) => [status, blockingExecuteAnswer(status)]));
    expect(answers).toEqual({
      scheduled: { success: true, status: 202 },
      running: { success: true, status: 202 },
      waiting: { success: true, status: 202 },
      completed: { success: true, status: 200 },
      failed: { success: false, status: 200 },
      cancelled: { success: false, status: 200 },
    });
  });
});

describe("Workflow Runs API: names of an organization's own code workflows (security)", () => {
  it("the isolate's cache of names answers only the organization that may run the workflow", async () => {
    await seedCatalog();
    const helloId = await workflowIdOf("hello");
    const owner = await seedOrganization();
    const other = await seedOrganization();
    const id = crypto.randomUUID();
    await env.DB.prepare(
      `INSERT INTO workflows (id, organization_id, name, kind, description, input_schema, output_schema, handlers, published)
       SELECT ?, ?, ?, kind, description, input_schema, output_schema, handlers, 1 FROM workflows WHERE id = ?`,
    )
      .bind(id, owner.organizationId, `own_${id.slice(0, 8)}`, helloId)
      .run();
    clearWorkflowNameCache();
    expect(await workflowNameById(env, owner.organizationId, id)).toBe(`own_${id.slice(0, 8)}`);
    // Cached now for the owner: another organization is still told there is no such workflow.
    await expect(workflowNameById(env, other.organizationId, id)).rejects.toMatchObject({ code: "workflow_not_found" });
  });
});
