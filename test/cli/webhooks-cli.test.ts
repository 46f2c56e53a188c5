/** `npm run admin -- webhooks ...` against the whole stack: create (secret once), list, rotate, deliveries, delete, seal-secrets, errors. */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, inject, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith("OUTRIDER_")) delete env[name];
  const child = spawn(process.execPath, ["scripts/admin.ts", ...args], {
    cwd: root,
    env: { ...env, OUTRIDER_URL: inject("baseUrl"), OUTRIDER_ADMIN_KEY: inject("adminKey"), NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((done, fail) => {
    child.once("error", fail);
    child.once("close", (code) => done({ code, stdout, stderr }));
  });
}

describe("admin CLI: webhooks", () => {
  it("create prints the secret once; list never shows it; rotate, deliveries, delete; API errors exit 1 with their code", async () => {
    const orgId = `org_cli_hooks_${Math.random().toString(36).slice(2, 8)}`;
    expect((await cli(["orgs", "create", "--name", "Hooks", "--id", orgId])).code).toBe(0);

    const created = await cli([
      "webhooks",
      "create",
      orgId,
      "--endpoint",
      "https://hooks.example.com/outrider",
      "--events",
      "run.failed,run.timed_out",
    ]);
    expect(created.code, created.stderr).toBe(0);
    const secret = /whsec_[A-Za-z0-9+/]+/.exec(created.stdout)?.[0];
    expect(secret).toBeDefined();
    expect(created.stderr).toMatch(/will not be shown again/);
    const id = /webhook (whk_[0-9a-f]+)/.exec(created.stdout)![1]!;

    const listed = await cli(["webhooks", "list", orgId]);
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).toContain("run.failed,run.timed_out");
    expect(listed.stdout).not.toContain("whsec_");

    const json = await cli(["webhooks", "list", orgId, "--json"]);
    expect(JSON.parse(json.stdout).webhooks[0]).toMatchObject({ id, url: "https://hooks.example.com/outrider" });

    const rotated = await cli(["webhooks", "rotate-secret", orgId, id]);
    expect(rotated.code).toBe(0);
    const newSecret = /whsec_[A-Za-z0-9+/]+/.exec(rotated.stdout)?.[0];
    expect(newSecret).toBeDefined();
    expect(newSecret).not.toBe(secret);

    const deliveries = await cli(["webhooks", "deliveries", orgId, id, "--limit", "5"]);
    expect(deliveries.code).toBe(0);
    expect(deliveries.stdout).toContain("no deliveries yet");

    const refused = await cli(["webhooks", "create", orgId, "--endpoint", "https://10.0.0.1/h"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("webhook_url_not_allowed");

    expect((await cli(["webhooks", "delete", orgId, id])).code).toBe(0);
    const again = await cli(["webhooks", "delete", orgId, id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("webhook_not_found");

    const missing = await cli(["webhooks", "create", orgId]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("--endpoint is required");
  });

  it("seal-secrets seals every stored secret in place and prints the counts; --json gives the summed answer", async () => {
    const orgId = `org_cli_seal_${Math.random().toString(36).slice(2, 8)}`;
    expect((await cli(["orgs", "create", "--name", "Seal", "--id", orgId])).code).toBe(0);
    expect((await cli(["webhooks", "create", orgId, "--endpoint", "https://hooks.example.com/seal"])).code).toBe(0);

    const sealed = await cli(["webhooks", "seal-secrets"]);
    expect(sealed.code, sealed.stderr).toBe(0);
    expect(sealed.stdout).toMatch(/sealed \(were plain\)\s+\d+/);
    expect(sealed.stdout).toMatch(/already current\s+[1-9]\d*/);
    expect(sealed.stdout).not.toContain("whsec_");

    const json = await cli(["webhooks", "seal-secrets", "--json"]);
    expect(json.code, json.stderr).toBe(0);
    const answer = JSON.parse(json.stdout) as { sealed: number; resealed: number; alreadyCurrent: number; unreadable: unknown[] };
    // Everything was sealed by the first call: this one seals nothing.
    expect(answer).toMatchObject({ sealed: 0, resealed: 0 });
    expect(answer.alreadyCurrent).toBeGreaterThanOrEqual(1);

    const extra = await cli(["webhooks", "seal-secrets", orgId]);
    expect(extra.code).toBe(1);
    expect(extra.stderr).toContain(`unexpected argument "${orgId}"`);
  });
});
