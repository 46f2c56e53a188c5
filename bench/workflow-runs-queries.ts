/**
 * Workflow Runs API queries over 100,000 runs in local D1: list (plain, by status, by workflow),
 * search by workflow name, dashboard counts and run detail, through the real Worker (wrangler
 * dev, workerd, local D1). Prints p50/p99 per query and the SQLite query plan of each, so the
 * figures can be tied to the indexes that serve them. No Temporal or host needed.
 *
 *   npm run bench:runs -- [--runs 100000] [--requests 200] [--write]
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { SignJWT } from "jose";
import { percentile, round1, writeSection } from "./report.ts";
import { freePorts } from "../test/support/ports.ts";
import { foldForSearch } from "../src/shared/names.ts";

const { values: args } = parseArgs({
  options: {
    runs: { type: "string", default: "100000" },
    requests: { type: "string", default: "200" },
    write: { type: "boolean", default: false },
  },
});
const RUNS = Number(args.runs);
const REQUESTS = Number(args.requests);
// Free ports chosen at run time, so the bench can run beside `npm run dev` and the tests.
const [PORT, INSPECTOR_PORT] = (await freePorts(2)) as [number, number];
const JWT_SECRET = "bench-only-jwt-secret-not-for-production";
const root = resolve(import.meta.dirname, "..");
const stateDir = mkdtempSync(join(tmpdir(), "outrider-bench-runs-"));
const ORG = "org_bench";
const OTHER_ORG = "org_bench_other";
const WORKFLOWS = ["hello", "two_steps", "summarize_url", "company_research", "approval", "flaky_step", "always_fails", "invoice_review"];
const STATUSES = ["completed", "completed", "completed", "failed", "running", "cancelled", "scheduled", "terminated", "timed_out"];

function wrangler(argv: string[]): string {
  const res = spawnSync("wrangler", argv, {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, CI: "true" },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.status !== 0) throw new Error(`wrangler ${argv.slice(0, 3).join(" ")} failed: ${res.stderr}`);
  return res.stdout;
}

function seedSql(): string {
  const lines = [
    `INSERT INTO organizations (id, name) VALUES ('${ORG}', 'bench'), ('${OTHER_ORG}', 'bench other');`,
    // With each name's fold for search, as the catalog publish writes it (a NULL fold would be searched by lower(name)).
    ...WORKFLOWS.map(
      (name, i) =>
        `INSERT INTO workflows (id, organization_id, name, name_folded, kind, input_schema, output_schema) VALUES ('00000000-0000-4000-8000-00000000000${i}', NULL, '${name}', '${foldForSearch(name)}', 'code', '{}', '{}');`,
    ),
  ];
  const start = Date.parse("2026-01-01T00:00:00Z");
  const BATCH = 100; // D1 caps statement length (SQLITE_TOOBIG at 500 rows)
  for (let i = 0; i < RUNS; i += BATCH) {
    const values: string[] = [];
    for (let j = i; j < Math.min(RUNS, i + BATCH); j++) {
      const w = j % WORKFLOWS.length;
      const org = j % 10 === 0 ? OTHER_ORG : ORG;
      const status = STATUSES[(j * 7) % STATUSES.length]!;
      const at = new Date(start + j * 1000).toISOString();
      const id = `${j.toString(16).padStart(8, "0")}-0000-4000-8000-${"0".repeat(12)}`;
      const waiting = status === "running" && j % 3 === 0 ? `'${at}'` : "NULL";
      values.push(
        `('${id}','${org}','00000000-0000-4000-8000-00000000000${w}','${WORKFLOWS[w]}','${WORKFLOWS[w]}-${id}','r-${j}','${status}','{"n":${j}}','${at}','${at}',${waiting})`,
      );
    }
    lines.push(
      `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, temporal_run_id, status, input, created_at, updated_at, waiting_since) VALUES ${values.join(",")};`,
    );
  }
  return lines.join("\n");
}

async function waitForEdge(): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    if ((await fetch(`http://127.0.0.1:${PORT}/health`).catch(() => null))?.ok) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("wrangler dev did not come up");
}

async function main() {
  console.log(`seeding ${RUNS} runs into local D1 (${stateDir})`);
  wrangler(["d1", "migrations", "apply", "DB", "--local", "--persist-to", stateDir]);
  const sqlFile = join(stateDir, "seed.sql");
  writeFileSync(sqlFile, seedSql());
  const seedStarted = Date.now();
  wrangler(["d1", "execute", "DB", "--local", "--persist-to", stateDir, "--file", sqlFile]);
  console.log(`seeded in ${((Date.now() - seedStarted) / 1000).toFixed(1)} s`);

  const edge = spawn(
    "wrangler",
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(PORT),
      "--persist-to",
      stateDir,
      "--show-interactive-dev-session=false",
      "--inspector-port",
      String(INSPECTOR_PORT),
      "--var",
      "RATE_LIMIT_PER_MINUTE:100000000",
    ],
    {
      cwd: root,
      env: {
        ...process.env,
        CI: "true",
        WRANGLER_SEND_METRICS: "false",
        // As `npm run dev` runs it: without wrangler's local trace collector (docs/configuration.md).
        X_LOCAL_OBSERVABILITY: process.env.X_LOCAL_OBSERVABILITY ?? "false",
        // Bench-only secrets; the HMAC ones at least MIN_SECRET_LENGTH (32) characters, or the edge refuses them.
        HOST_SHARED_SECRET: "bench-only-host-shared-secret-not-for-production",
        STREAM_TOKEN_SECRET: "bench-only-stream-token-secret-not-for-production",
        ADMIN_API_KEY: "bench-admin-key-of-at-least-32-characters", // bench only
        INTERNAL_SERVICE_SECRET: "bench-internal-secret-of-at-least-32-characters", // bench only
        JWT_SECRET,
        WEBHOOK_SECRET_KEYS: `bench:${Buffer.alloc(32, 7).toString("base64")}`,
      },
      stdio: "ignore",
      detached: true,
    },
  );
  try {
    await waitForEdge();
    const token = await new SignJWT({ org_id: ORG })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("bench")
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(JWT_SECRET));
    const helloId = "00000000-0000-4000-8000-000000000000";
    const someRun = "00000001-0000-4000-8000-000000000000";
    const queries: Array<[string, string]> = [
      ["list, newest first (page 1, limit 10)", "/api/v1/workflow-runs"],
      ["list, page 500 (limit 100)", "/api/v1/workflow-runs?page=500&limit=100"],
      ["list by status=failed", "/api/v1/workflow-runs?status=failed&limit=50"],
      ["list by status=waiting", "/api/v1/workflow-runs?status=waiting&limit=50"],
      ["list by workflowId", `/api/v1/workflow-runs?workflowId=${helloId}&limit=50`],
      ['search by workflow name ("step")', "/api/v1/workflow-runs?search=step&limit=50"],
      ["dashboard counts of one workflow", `/api/v1/workflow-runs/dashboard/${helloId}`],
      ["run detail", `/api/v1/workflow-runs/${someRun}`],
    ];
    const rows: string[] = [];
    for (const [label, path] of queries) {
      const latencies: number[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        const t0 = performance.now();
        const res = await fetch(`http://127.0.0.1:${PORT}${path}`, { headers: { authorization: `Bearer ${token}` } });
        await res.arrayBuffer();
        latencies.push(performance.now() - t0);
        if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
      }
      latencies.sort((a, b) => a - b);
      const line = `| ${label} | \`${path.replace(helloId, "<id>").replace(someRun, "<runId>")}\` | ${round1(percentile(latencies, 50))} | ${round1(percentile(latencies, 99))} |`;
      console.log(line);
      rows.push(line);
    }
    // The plans SQLite chose (each line names the index that serves the query).
    const plans = [
      [
        "list by status",
        `SELECT * FROM runs WHERE organization_id = '${ORG}' AND status IN ('failed','timed_out') ORDER BY created_at DESC, id DESC LIMIT 50`,
      ],
      [
        "list by workflow",
        `SELECT * FROM runs WHERE organization_id = '${ORG}' AND workflow_id = '${helloId}' ORDER BY created_at DESC, id DESC LIMIT 50`,
      ],
      [
        "dashboard",
        `SELECT status, waiting_since IS NOT NULL, COUNT(*) FROM runs WHERE organization_id = '${ORG}' AND workflow_id = '${helloId}' GROUP BY 1, 2`,
      ],
    ].map(([name, sql]) => {
      const out = JSON.parse(
        wrangler(["d1", "execute", "DB", "--local", "--persist-to", stateDir, "--json", "--command", `EXPLAIN QUERY PLAN ${sql}`]),
      ) as Array<{ results: Array<{ detail: string }> }>;
      const detail = out[0]!.results.map((r) => r.detail).join("; ");
      console.log(`${name}: ${detail}`);
      return `- ${name}: \`${detail}\``;
    });
    if (args.write) {
      writeSection("workflow-runs-queries", [
        "## Workflow Runs API queries over 100,000 runs",
        "",
        `\`npm run bench:runs -- --runs ${RUNS} --requests ${REQUESTS} --write\`: ${RUNS.toLocaleString("en")} runs in local D1 (90% in the caller's organization, 8 workflows, mixed statuses), each query ${REQUESTS} times in sequence through wrangler dev (workerd, local D1), JWT auth and the rate limiter included.`,
        "",
        "| query | route | p50 ms | p99 ms |",
        "|---|---|---|---|",
        ...rows,
        "",
        "SQLite's plans for the main queries:",
        "",
        ...plans,
      ]);
    }
  } finally {
    if (edge.pid && edge.exitCode === null) {
      const exited = new Promise((r) => edge.once("exit", r));
      process.kill(-edge.pid, "SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    rmSync(stateDir, { recursive: true, force: true }); // the seeded D1 (tens of MB)
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
