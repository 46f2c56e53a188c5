import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { postJson, seedCatalog, seedOrganization, type OutputErrorBody } from "./helpers.ts";

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
      expect(((await res.json()) as OutputErrorBody).code).toBe("host_unavailable");
      const rows = await env.DB.prepare("SELECT status FROM runs WHERE organization_id = ?").bind(org.organizationId).all();
      expect(rows.results).toEqual([]);
    });
  }
});
