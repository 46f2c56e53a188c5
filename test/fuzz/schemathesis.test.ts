/**
 * Hostile input: Schemathesis fuzzes every operation of /openapi.json (valid and invalid data,
 * coverage of boundaries) against the whole stack, one API family at a time with that family's
 * credentials. The requests it made are read back from its HAR report: there must be thousands,
 * and none may get a 5xx.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { resolve } from "node:path";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEST_JWT_SECRET, startStack, type RunningStack } from "../support/stack.ts";

const root = resolve(import.meta.dirname, "../..");
const reportDir = resolve(root, "test-results/fuzz");
/** Test cases per operation; ~44 operations × phases give a few thousand requests. */
const MAX_EXAMPLES = Number(process.env.FUZZ_MAX_EXAMPLES ?? 100);

let stack: RunningStack;
let schemathesis: string;
const credentials: Record<string, string[]> = {};

interface HarEntry {
  request: { method: string; url: string };
  response: { status: number };
}

beforeAll(async () => {
  const install = spawnSync("bash", ["scripts/install-schemathesis.sh"], { cwd: root, encoding: "utf8" });
  if (install.status !== 0) throw new Error(`installing schemathesis failed: ${install.stderr}`);
  schemathesis = install.stdout.trim();
  stack = await startStack({ edge: 8887, host: 8888, temporal: 7251 });
  const adminHeaders = { authorization: `Bearer ${stack.adminKey}`, "content-type": "application/json" };
  const org = (await (await fetch(`${stack.baseUrl}/admin/v1/organizations`, { method: "POST", headers: adminHeaders, body: JSON.stringify({ name: "fuzz" }) })).json()) as { id: string };
  const key = (await (await fetch(`${stack.baseUrl}/admin/v1/organizations/${org.id}/api-keys`, { method: "POST", headers: adminHeaders, body: JSON.stringify({ name: "fuzz" }) })).json()) as { key: string };
  const jwt = await new SignJWT({ org_id: org.id }).setProtectedHeader({ alg: "HS256" }).setSubject("fuzz").setExpirationTime("2h").sign(new TextEncoder().encode(TEST_JWT_SECRET));
  credentials["workflow-api"] = ["-H", `Authorization: Bearer ${key.key}`, "--include-path-regex", "^/(workflow|health|ready|heartbeat|openapi.json|docs)"];
  credentials["published-run"] = ["-H", `Authorization: Bearer ${key.key}`, "--include-path-regex", "^/api/v1/run/"];
  credentials["workflow-runs"] = ["-H", `Authorization: Bearer ${jwt}`, "--include-path-regex", "^/api/v1/workflow-runs"];
  credentials.admin = ["-H", `Authorization: Bearer ${stack.adminKey}`, "--include-path-regex", "^/admin/"];
  credentials.internal = ["--include-path-regex", "^/internal/"];
}, 900_000);

afterAll(async () => {
  await stack?.stop();
});

describe("Schemathesis over /openapi.json", () => {
  it("thousands of generated requests across every route: zero 5xx", () => {
    rmSync(reportDir, { recursive: true, force: true });
    mkdirSync(reportDir, { recursive: true });
    const entries: HarEntry[] = [];
    const exits: Record<string, number> = {};
    const summaries: string[] = [];
    for (const [family, args] of Object.entries(credentials)) {
      const har = resolve(reportDir, `${family}.har`);
      const res = spawnSync(
        schemathesis,
        [
          "run", `${stack.baseUrl}/openapi.json`,
          "--checks", "not_a_server_error",
          "--max-examples", String(MAX_EXAMPLES),
          "--phases", "examples,fuzzing",
          "--workers", "2",
          "--seed", "20261122",
          "--request-timeout", "60",
          "--suppress-health-check", "all",
          "--report", "har", "--report-har-path", har,
          ...args,
        ],
        { cwd: root, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", SCHEMATHESIS_TELEMETRY: "false" }, maxBuffer: 256 * 1024 * 1024 },
      );
      const output = `${res.stdout}\n${res.stderr}`.trim().split("\n");
      summaries.push(`== ${family} (exit ${res.status})\n${output.slice(res.status === 0 ? -8 : -80).join("\n")}`);
      exits[family] = res.status ?? -1;
      if (!existsSync(har)) {
        summaries.push(`== ${family}: no HAR report\n${output.slice(-80).join("\n")}`);
        continue;
      }
      const log = JSON.parse(readFileSync(har, "utf8")) as { log: { entries: HarEntry[] } };
      entries.push(...log.log.entries);
    }
    console.log(summaries.join("\n\n"));
    const serverErrors = entries.filter((e) => e.response.status >= 500);
    const operations = new Set(entries.map((e) => `${e.request.method} ${new URL(e.request.url).pathname.split("/").slice(0, 4).join("/")}`));
    console.log(`fuzz: ${entries.length} requests, ${operations.size} path prefixes, ${serverErrors.length} server errors`);
    expect(serverErrors.map((e) => `${e.response.status} ${e.request.method} ${e.request.url}`)).toEqual([]);
    expect(entries.length).toBeGreaterThanOrEqual(3000);
    // Schemathesis itself found nothing (its not_a_server_error check, and no runtime errors).
    expect(exits).toEqual(Object.fromEntries(Object.keys(credentials).map((f) => [f, 0])));
  });
});
