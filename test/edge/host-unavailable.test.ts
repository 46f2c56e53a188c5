import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { ApiError } from "../../src/errors.ts";
import { HostClient } from "../../src/host-client.ts";
import { postJson, seedCatalog, seedOrganization, type ErrorBody } from "./helpers.ts";

// In edge tests HOST_URL points at a closed port, so every call to the host fails to connect.
describe("when the host cannot be reached", () => {
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  beforeAll(async () => {
    org = await seedOrganization();
    await seedCatalog();
  });

  for (const path of ["/workflow/start", "/workflow/run"]) {
    it(`${path} answers 503 host_unavailable with Retry-After and leaves no run row`, async () => {
      const res = await postJson(path, { workflowName: "hello", input: { name: "Ada" } }, org.key);
      expect(res.status).toBe(503);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await res.json()) as ErrorBody).error.code).toBe("host_unavailable");
      const rows = await env.DB.prepare("SELECT status FROM runs WHERE organization_id = ?").bind(org.organizationId).all();
      expect(rows.results).toEqual([]);
    });
  }
});

describe("host failures that are not outages (security: no retry that cannot work)", () => {
  const client = () => new HostClient({ ...env, HOST_URL: "http://host.test" } as Env);
  const answer = (status: number, code: string) => vi.spyOn(globalThis, "fetch").mockResolvedValue(Response.json({ error: { code, message: "m" } }, { status }));
  afterEach(() => vi.restoreAllMocks());

  async function failure(p: Promise<unknown>) {
    const err = await p.then(() => null, (e: unknown) => e);
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

  it("the host's 400 invalid_request passes through as a 400", async () => {
    answer(400, "invalid_request");
    const err = await failure(client().interact("approval-x", "update", "setPriority", {}));
    expect([err.code, err.status]).toEqual(["invalid_request", 400]);
  });

  it("an outage (502/503/504 from the host or its proxy) stays 503 host_unavailable with Retry-After", async () => {
    for (const status of [502, 503, 504]) {
      answer(status, "temporal_unavailable");
      const err = await failure(client().interact("approval-x", "signal", "approve", {}));
      expect([err.code, err.status]).toEqual(["host_unavailable", 503]);
      expect(Number(err.headers?.["retry-after"])).toBeGreaterThan(0);
      vi.restoreAllMocks();
    }
  });
});
