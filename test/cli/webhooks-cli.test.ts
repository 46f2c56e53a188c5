/** `npm run admin -- webhooks ...` against the whole stack: create (secret once), list, rotate, deliveries, delete, seal-secrets, errors. */
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { describe, expect, inject, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");

function cli(args: string[], url: string = inject("baseUrl")): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith("OUTRIDER_")) delete env[name];
  const child = spawn(process.execPath, ["scripts/admin.ts", ...args], {
    cwd: root,
    env: { ...env, OUTRIDER_URL: url, OUTRIDER_ADMIN_KEY: inject("adminKey"), NO_COLOR: "1" },
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

interface SealAnswer {
  sealed: number;
  resealed: number;
  alreadyCurrent: number;
  unreadable: unknown[];
  next: string | null;
}

/**
 * A pass-through proxy in front of the stack that records each request's path and query and the
 * JSON it answered, so a test sees the calls the CLI made. `close` stops it.
 */
async function recordingProxy(target: string) {
  const calls: Array<{ url: URL; answer: unknown }> = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = new Headers();
    for (const name of ["authorization", "content-type", "accept"]) if (req.headers[name]) headers.set(name, String(req.headers[name]));
    const upstream = await fetch(new URL(req.url!, target), {
      method: req.method,
      headers,
      body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
    });
    const text = await upstream.text();
    calls.push({ url: new URL(req.url!, "http://proxy"), answer: JSON.parse(text) });
    res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "application/json" });
    res.end(text);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
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
    // A page at a time, newest first: --limit 1 names the next page, --before reads it.
    const second = /webhook (whk_[0-9a-f]+)/.exec(
      (await cli(["webhooks", "create", orgId, "--endpoint", "https://hooks.example.com/second"])).stdout,
    )![1]!;
    const firstPage = await cli(["webhooks", "list", orgId, "--limit", "1", "--json"]);
    const { webhooks: newest, next } = JSON.parse(firstPage.stdout) as { webhooks: Array<{ id: string }>; next: string };
    expect(newest.map((w) => w.id)).toEqual([second]);
    expect((await cli(["webhooks", "list", orgId, "--limit", "1"])).stdout).toContain(`older webhooks: --before ${next}`);
    const olderPage = JSON.parse((await cli(["webhooks", "list", orgId, "--limit", "1", "--before", next, "--json"])).stdout);
    expect(olderPage).toMatchObject({ webhooks: [{ id }], next: null });

    const rotated = await cli(["webhooks", "rotate-secret", orgId, id]);
    expect(rotated.code).toBe(0);
    const newSecret = /whsec_[A-Za-z0-9+/]+/.exec(rotated.stdout)?.[0];
    expect(newSecret).toBeDefined();
    expect(newSecret).not.toBe(secret);
    expect(rotated.stderr).toMatch(/old secret also signs every delivery until \d{4}-\d\d-\d\dT/);
    const alone = await cli(["webhooks", "rotate-secret", orgId, id, "--previous-valid-for", "0"]);
    expect([alone.code, alone.stderr]).toEqual([0, expect.any(String)]);
    expect(alone.stderr).toContain("The old secret no longer signs");
    const bad = await cli(["webhooks", "rotate-secret", orgId, id, "--previous-valid-for", "soon"]);
    expect([bad.code, bad.stderr]).toEqual([1, expect.stringContaining("--previous-valid-for must be an integer")]);

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

  it("seal-secrets --limit N asks for N rows a call and follows next until null; without it the server's default; a bad --limit is refused", async () => {
    const orgId = `org_cli_limit_${Math.random().toString(36).slice(2, 8)}`;
    expect((await cli(["orgs", "create", "--name", "Limit", "--id", orgId])).code).toBe(0);
    for (const n of [1, 2, 3])
      expect((await cli(["webhooks", "create", orgId, "--endpoint", `https://hooks.example.com/l${n}`])).code).toBe(0);

    const proxy = await recordingProxy(inject("baseUrl"));
    try {
      const paged = await cli(["webhooks", "seal-secrets", "--limit", "2", "--json"], proxy.url);
      expect(paged.code, paged.stderr).toBe(0);
      const calls = proxy.calls.filter((c) => c.url.pathname === "/admin/v1/webhooks/seal-secrets");
      const answers = calls.map((c) => c.answer as SealAnswer);
      // At least the three endpoints made here: two calls or more, each asking for 2 rows and getting at most 2.
      expect(calls.length).toBeGreaterThanOrEqual(2);
      for (const call of calls) expect(call.url.searchParams.get("limit")).toBe("2");
      for (const a of answers) expect(a.sealed + a.resealed + a.alreadyCurrent + a.unreadable.length).toBeLessThanOrEqual(2);
      // The first starts from the beginning; each next one goes on after the previous answer's `next`; the last has none.
      expect(calls.map((c) => c.url.searchParams.get("after"))).toEqual([null, ...answers.slice(0, -1).map((a) => a.next)]);
      expect(answers.at(-1)!.next).toBeNull();
      // What it prints is the sum of the answers.
      const printed = JSON.parse(paged.stdout) as Omit<SealAnswer, "next">;
      expect(printed.alreadyCurrent).toBe(answers.reduce((n, a) => n + a.alreadyCurrent, 0));
      expect(printed.alreadyCurrent).toBeGreaterThanOrEqual(3);

      proxy.calls.length = 0;
      expect((await cli(["webhooks", "seal-secrets"], proxy.url)).code).toBe(0);
      const plain = proxy.calls.filter((c) => c.url.pathname === "/admin/v1/webhooks/seal-secrets");
      expect(plain.length).toBeGreaterThanOrEqual(1);
      for (const call of plain) expect(call.url.searchParams.has("limit")).toBe(false);
    } finally {
      await proxy.close();
    }

    for (const limit of ["0", "501", "-1"]) {
      const refused = await cli(["webhooks", "seal-secrets", "--limit", limit]);
      expect([limit, refused.code]).toEqual([limit, 1]);
      expect(refused.stderr).toContain("invalid_request");
      expect(refused.stderr).toContain("limit must be an integer from 1 to 500");
    }
    const notNumber = await cli(["webhooks", "seal-secrets", "--limit", "many"]);
    expect(notNumber.code).toBe(1);
    expect(notNumber.stderr).toContain('--limit must be an integer, not "many"');
  });

  it("seal-secrets stops with a message when the server's `next` does not move on (it would ask for the same page forever)", async () => {
    let calls = 0;
    const server = createServer((req, res) => {
      calls++;
      req.resume();
      // After 20 calls the fake gives up itself, so a CLI that loops ends too (and the test sees how many it made).
      if (calls > 20) return res.writeHead(500).end("enough");
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ sealed: 0, resealed: 0, alreadyCurrent: 1, unreadable: [], next: "the-same-cursor" }));
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    try {
      const { code, stderr } = await cli(["webhooks", "seal-secrets"], `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      expect(code).toBe(1);
      expect(stderr).toContain('answered the same next ("the-same-cursor") twice');
      expect(calls).toBe(2);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    }
  });
});
