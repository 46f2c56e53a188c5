/**
 * No secret in logs: after driving every kind of credential and an environment override through
 * the stack, none of them appears in what the edge, the host or Temporal printed. (The dev
 * banner prints the dev API key and admin key on purpose; it is cut off before the check.)
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { inject } from "vitest";
import { describe, expect, it } from "vitest";
import { TEST_JWT_SECRET, testJwt } from "../support/stack.ts";
import { admin, baseUrl, postJson } from "./helpers.ts";

describe("logs", () => {
  it("hold no API key, admin key, JWT, signing secret or environment override value", async () => {
    const org = await admin<{ id: string }>("POST", "/admin/v1/organizations", { name: "logs" });
    const { key } = await admin<{ key: string }>("POST", `/admin/v1/organizations/${org.id}/api-keys`, { name: "logs" });
    const jwt = await testJwt(org.id, { expiresIn: "5m" });
    const envSecret = `env-secret-${crypto.randomUUID()}`;
    expect((await postJson("/workflow/run", { workflowName: "hello", input: { name: "Logs" } }, { key })).status).toBe(200);
    expect((await postJson("/workflow/run", { workflowName: "hello", input: 42 }, { key })).status).toBe(400);
    expect((await postJson("/workflow/run", {}, { key: `${key.slice(0, -4)}XXXX` })).status).toBe(401);
    const catalog = (await (
      await fetch(new URL("/workflow/catalog", baseUrl()), { headers: { authorization: `Bearer ${key}` } })
    ).json()) as { workflows: Array<{ id: string; name: string }> };
    const form = new FormData();
    form.set("workflowId", catalog.workflows.find((w) => w.name === "hello")!.id);
    form.set("inputs", JSON.stringify({ name: "Logs" }));
    form.set("envs", JSON.stringify({ API_TOKEN: envSecret }));
    const executed = await fetch(new URL("/api/v1/workflow-runs/execute", baseUrl()), {
      method: "POST",
      headers: { authorization: `Bearer ${jwt}` },
      body: form,
    });
    expect(executed.status).toBe(200);

    const logs = readFileSync(join(inject("stateDir"), "stack.log"), "utf8");
    const banner = logs.indexOf("OUTRIDER_READY");
    expect(banner).toBeGreaterThanOrEqual(0);
    const afterBanner = logs.slice(banner);
    for (const [what, secret] of [
      ["API key secret", key.split("_")[2]!],
      ["JWT", jwt],
      ["JWT signing secret", TEST_JWT_SECRET],
      ["environment override", envSecret],
      ["admin key", inject("adminKey")],
    ] as const) {
      expect(afterBanner.includes(secret), what).toBe(false);
    }
  });
});
