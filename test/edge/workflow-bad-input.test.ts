import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { call, postJson, seedCatalog, seedOrganization, type OutputErrorBody } from "./helpers.ts";

async function runCount(organizationId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM runs WHERE organization_id = ?").bind(organizationId).first<{ n: number }>();
  return row!.n;
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

  it("empty body → 400 invalid_json", async () => {
    const res = await postJson("/workflow/start", "", org.key);
    expect(res.status).toBe(400);
    expect(((await res.json()) as OutputErrorBody).code).toBe("invalid_json");
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
    for (const timeout of [0, -5, 249, 1.5, "abc", "", 10_000_000]) {
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

  it("none of the refused requests left a run row", async () => {
    expect(await runCount(org.organizationId)).toBe(0);
  });
});
