/**
 * Hostile input: Schemathesis fuzzes every operation of /openapi.json (valid and invalid data,
 * coverage of boundaries) against the whole stack, one API family at a time with that family's
 * credentials. The requests it made are read back from its HAR report: there must be thousands,
 * and none may get a 5xx.
 *
 * Schemathesis' own output (a pytest-style report whose closing line log readers take for a
 * pytest run) never reaches the test log: it goes to test-results/fuzz/<family>.log, next to its
 * HAR and JUnit reports. The log gets one line per API family: requests sent, 5xx, failures.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { relative, resolve } from "node:path";
import { beforeAll, describe, expect, inject, it } from "vitest";
import { testJwt } from "../support/stack.ts";

const root = resolve(import.meta.dirname, "../..");
const reportDir = resolve(root, "test-results/fuzz");
/** Test cases per operation; ~44 operations × phases give a few thousand requests. */
const MAX_EXAMPLES = Number(process.env.FUZZ_MAX_EXAMPLES ?? 100);

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
  const baseUrl = inject("baseUrl");
  const adminKey = inject("adminKey");
  const adminHeaders = { authorization: `Bearer ${adminKey}`, "content-type": "application/json" };
  const org = (await (
    await fetch(`${baseUrl}/admin/v1/organizations`, { method: "POST", headers: adminHeaders, body: JSON.stringify({ name: "fuzz" }) })
  ).json()) as { id: string };
  const key = (await (
    await fetch(`${baseUrl}/admin/v1/organizations/${org.id}/api-keys`, {
      method: "POST",
      headers: adminHeaders,
      body: JSON.stringify({ name: "fuzz" }),
    })
  ).json()) as { key: string };
  const jwt = await testJwt(org.id, { subject: "fuzz", expiresIn: "2h" });
  credentials["workflow-api"] = [
    "-H",
    `Authorization: Bearer ${key.key}`,
    "--include-path-regex",
    "^/(workflow|health|ready|heartbeat|openapi.json|docs)",
  ];
  credentials["published-run"] = ["-H", `Authorization: Bearer ${key.key}`, "--include-path-regex", "^/api/v1/run/"];
  credentials["workflow-runs"] = ["-H", `Authorization: Bearer ${jwt}`, "--include-path-regex", "^/api/v1/workflow-runs"];
  credentials.admin = ["-H", `Authorization: Bearer ${adminKey}`, "--include-path-regex", "^/admin/"];
  credentials.internal = ["--include-path-regex", "^/internal/"];
}, 900_000);

/** Failed and errored test cases of a JUnit report (one test case per operation). */
function junitFailures(path: string): number {
  if (!existsSync(path)) return -1;
  const xml = readFileSync(path, "utf8");
  return (xml.match(/<(failure|error)[\s>]/g) ?? []).length;
}

describe("Schemathesis over /openapi.json", () => {
  it("thousands of generated requests across every route: zero 5xx", () => {
    rmSync(reportDir, { recursive: true, force: true });
    mkdirSync(reportDir, { recursive: true });
    const entries: HarEntry[] = [];
    const exits: Record<string, number> = {};
    const lines: string[] = [];
    for (const [family, args] of Object.entries(credentials)) {
      const har = resolve(reportDir, `${family}.har`);
      const junit = resolve(reportDir, `${family}.junit.xml`);
      const log = resolve(reportDir, `${family}.log`);
      const res = spawnSync(
        schemathesis,
        [
          "run",
          `${inject("baseUrl")}/openapi.json`,
          "--checks",
          "not_a_server_error",
          "--max-examples",
          String(MAX_EXAMPLES),
          "--phases",
          "examples,fuzzing",
          "--workers",
          "2",
          "--seed",
          "20261122",
          "--request-timeout",
          "60",
          "--suppress-health-check",
          "all",
          "--report",
          "har,junit",
          "--report-har-path",
          har,
          "--report-junit-path",
          junit,
          ...args,
        ],
        {
          cwd: root,
          encoding: "utf8",
          env: { ...process.env, NO_COLOR: "1", SCHEMATHESIS_TELEMETRY: "false" },
          maxBuffer: 256 * 1024 * 1024,
        },
      );
      writeFileSync(log, `$ schemathesis run ... (exit ${res.status})\n\n== stdout\n${res.stdout}\n== stderr\n${res.stderr}\n`);
      exits[family] = res.status ?? -1;
      const familyEntries = existsSync(har) ? (JSON.parse(readFileSync(har, "utf8")) as { log: { entries: HarEntry[] } }).log.entries : [];
      entries.push(...familyEntries);
      const serverErrors = familyEntries.filter((e) => e.response.status >= 500).length;
      const failures = junitFailures(junit);
      lines.push(
        `fuzz ${family}: ${familyEntries.length} requests, ${serverErrors} 5xx, ${failures < 0 ? "no JUnit report" : `${failures} failures`}` +
          (res.status === 0 ? "" : ` (exit ${res.status}; see ${relative(root, log)})`),
      );
    }
    console.log(lines.join("\n"));
    const serverErrors = entries.filter((e) => e.response.status >= 500);
    expect(serverErrors.map((e) => `${e.response.status} ${e.request.method} ${e.request.url}`)).toEqual([]);
    expect(entries.length).toBeGreaterThanOrEqual(3000);
    // Schemathesis itself found nothing (its not_a_server_error check, and no runtime errors).
    expect(exits).toEqual(Object.fromEntries(Object.keys(credentials).map((f) => [f, 0])));
  });
});
