/**
 * `npm run dev`: the whole stack on this machine, the way a developer (and the e2e tests) run it.
 *
 *   Temporal dev server  127.0.0.1:$TEMPORAL_PORT (7233)   started unless one already listens
 *   edge Worker          127.0.0.1:$OUTRIDER_PORT (8787)   wrangler dev, local D1 and Durable Objects
 *   Node host            127.0.0.1:$HOST_PORT (8788)       control API + Temporal worker
 *   local LLM server     127.0.0.1:$LOCAL_LLM_PORT (8790)  OpenAI-compatible stand-in for providers without a key
 *
 * Other ports: Temporal's HTTP API and metrics ($TEMPORAL_HTTP_PORT, $TEMPORAL_METRICS_PORT; default
 * the gRPC port + 10 and + 11) and wrangler's inspector ($OUTRIDER_INSPECTOR_PORT; default edge + 1000).
 *
 * It applies D1 migrations, seeds a development organization with an API key (the value of
 * OUTRIDER_DEV_API_KEY when set) and an example prompt workflow, and prints the key. The admin key
 * (ADMIN_API_KEY, else .outrider/dev-admin-key) is printed too; the internal service secret
 * (INTERNAL_SERVICE_SECRET, else .outrider/dev-internal-secret) is kept for `npm run admin -- run`.
 * WEBHOOK_SECRET_KEYS (the key encrypting webhook signing secrets in D1) is kept in
 * .outrider/dev-webhook-secret-keys unless set, so endpoints made in one session still sign in the
 * next. HOST_SHARED_SECRET is generated for the session unless set. OUTRIDER_WRANGLER_CONFIG runs the edge
 * from another wrangler config (bench/geography.ts uses it); OUTRIDER_BENCH_WORKER_SOCKET=1 finds the
 * Worker's own socket behind wrangler's dev proxy, for the host and the benchmarks (bench/worker-socket.ts). Everything here is for development only.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { join, resolve } from "node:path";
import { findWorkerSocket } from "../bench/worker-socket.ts";
import { devCredential as keptDevCredential, ensurePrivateDir } from "./dev-credentials.ts";
import { promptInputSchema } from "../src/shared/prompt-template.ts";
import { generateApiKey, parseApiKey, sha256Hex } from "../src/shared/api-keys.ts";
import { foldForSearch } from "../src/shared/names.ts";

const root = resolve(import.meta.dirname, "..");
const env = process.env;
const edgePort = Number(env.OUTRIDER_PORT ?? 8787);
const hostPort = Number(env.HOST_PORT?.trim() || 8788);
const temporalPort = Number(env.TEMPORAL_PORT ?? 7233);
const localLlmPort = Number(env.LOCAL_LLM_PORT ?? 8790);
// The other ports the stack's children open (tests choose free ones for every port).
const temporalHttpPort = Number(env.TEMPORAL_HTTP_PORT ?? temporalPort + 10);
const temporalMetricsPort = Number(env.TEMPORAL_METRICS_PORT ?? temporalPort + 11);
const inspectorPort = Number(env.OUTRIDER_INSPECTOR_PORT ?? edgePort + 1000);
const stateDir = resolve(root, env.OUTRIDER_STATE_DIR ?? ".wrangler/state");
const devDir = join(root, ".outrider");
const DEV_ORG_ID = "org_dev";
const STARTUP_TIMEOUT_MS = 180_000;

const children: ChildProcess[] = [];
const log = (msg: string) => console.log(`[dev] ${msg}`);

function portOpen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      done(true);
    });
    socket.once("error", () => done(false));
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = STARTUP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what} did not come up within ${timeoutMs / 1000}s`);
}

function start(name: string, command: string, args: string[], extraEnv: Record<string, string>, onLine?: (line: string) => void) {
  const child = spawn(command, args, { cwd: root, env: { ...env, ...extraEnv }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  children.push(child);
  for (const stream of [child.stdout!, child.stderr!]) {
    let buffered = "";
    stream.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line.trim()) console.log(`[${name}] ${line}`);
        onLine?.(line);
      }
    });
  }
  child.on("exit", (code, signal) => {
    if (!stopping) {
      console.error(`[dev] ${name} exited (${signal ?? code}); stopping the stack`);
      void stop(1);
    }
  });
  return child;
}

function wrangler(args: string[]) {
  const result = spawnSync("wrangler", args, { cwd: root, env: { ...env, CI: "true" }, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`wrangler ${args.join(" ")} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/**
 * DEV ONLY: a credential of local sessions. The environment's value wins; otherwise it is kept in
 * .outrider/<file> (git-ignored, 0600 in a 0700 folder), generated the first time, so tools such
 * as `npm run admin` find the same value across sessions (scripts/dev-credentials.ts).
 */
function devCredential(given: string | undefined, file: string, generate: () => string): string {
  const { value, note } = keptDevCredential(devDir, given, file, generate);
  if (note) log(note);
  return value;
}

function devApiKey(): string {
  const given = env.OUTRIDER_DEV_API_KEY;
  if (given && !parseApiKey(given)) {
    throw new Error("OUTRIDER_DEV_API_KEY must look like otr_<id>_<secret> (id: 8-32 of a-z0-9, secret: 24-128 letters and digits)");
  }
  return devCredential(given, "dev-api-key", () => generateApiKey().key);
}

/** The admin API key (`npm run admin`). */
const devAdminKey = () => devCredential(env.ADMIN_API_KEY, "dev-admin-key", () => `dev_admin_${randomBytes(24).toString("hex")}`);

/** The Workflow Runs API's internal service secret (`npm run admin -- run`). */
const devInternalSecret = () => devCredential(env.INTERNAL_SERVICE_SECRET, "dev-internal-secret", () => randomBytes(32).toString("hex"));

/** DEV ONLY: the key encrypting webhook signing secrets at rest, kept with the local D1 it encrypts for. */
const devWebhookSecretKeys = () =>
  devCredential(env.WEBHOOK_SECRET_KEYS, "dev-webhook-secret-keys", () => `dev1:${randomBytes(32).toString("base64")}`);

/** The example prompt workflow of the development organization (POST /api/v1/run/wf_devexplain). */
const DEV_PROMPT_WORKFLOW = {
  id: "wf_devexplain",
  name: "Explain a topic",
  prompt: {
    template: "Explain {{topic}} to {{audience}} in two sentences.",
    variables: ["topic", "audience"],
    model: "local/writer",
    webSearch: false,
    maxOutputTokens: 256,
  },
};

async function seed(key: string) {
  const parsed = parseApiKey(key)!;
  const digest = await sha256Hex(parsed.secret);
  const q = (s: string) => `'${s.replaceAll("'", "''")}'`;
  const sql = [
    `INSERT INTO organizations (id, name) VALUES (${q(DEV_ORG_ID)}, 'Development') ON CONFLICT (id) DO NOTHING;`,
    `INSERT INTO api_keys (id, organization_id, prefix, secret_sha256, name) VALUES (${q(parsed.id)}, ${q(DEV_ORG_ID)}, ${q(parsed.prefix)}, ${q(digest)}, 'dev key')
       ON CONFLICT (id) DO UPDATE SET secret_sha256 = excluded.secret_sha256, organization_id = excluded.organization_id, revoked_at = NULL;`,
    `INSERT INTO workflows (id, organization_id, name, name_folded, kind, description, input_schema, output_schema, published, prompt)
       VALUES (${q(DEV_PROMPT_WORKFLOW.id)}, ${q(DEV_ORG_ID)}, ${q(DEV_PROMPT_WORKFLOW.name)}, ${q(foldForSearch(DEV_PROMPT_WORKFLOW.name))}, 'prompt', 'Example prompt workflow (dev seed)',
         ${q(JSON.stringify(promptInputSchema(DEV_PROMPT_WORKFLOW.prompt.variables)))}, '{}', 1, ${q(JSON.stringify(DEV_PROMPT_WORKFLOW.prompt))})
       ON CONFLICT (id) DO NOTHING;`,
  ].join("\n");
  wrangler(["d1", "execute", "DB", "--local", "--persist-to", stateDir, "--command", sql]);
}

let stopping = false;
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  for (const child of children.reverse()) {
    try {
      if (child.pid) process.kill(-child.pid, "SIGTERM");
    } catch {
      /* already gone */
    }
  }
  await new Promise((r) => setTimeout(r, 1500));
  for (const child of children) {
    try {
      if (child.pid) process.kill(-child.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  process.exit(code);
}
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

async function main() {
  // Dev-only secrets, fresh for each session unless given.
  const sharedSecret = env.HOST_SHARED_SECRET || randomBytes(32).toString("hex");
  const streamTokenSecret = env.STREAM_TOKEN_SECRET || randomBytes(32).toString("hex");
  const key = devApiKey();
  const adminKey = devAdminKey();
  // DEV ONLY: kept in .outrider/dev-internal-secret unless given, for `npm run admin -- run`.
  const internalSecret = devInternalSecret();
  // DEV ONLY default, fresh per session unless given.
  const jwtSecret = env.JWT_SECRET || randomBytes(32).toString("hex");
  // DEV ONLY: kept in .outrider/dev-webhook-secret-keys unless given.
  const webhookSecretKeys = devWebhookSecretKeys();
  const dirNote = ensurePrivateDir(devDir);
  if (dirNote) log(dirNote);
  for (const [name, port] of [
    ["OUTRIDER_PORT", edgePort],
    ["HOST_PORT", hostPort],
    ["LOCAL_LLM_PORT", localLlmPort],
  ] as const) {
    if (await portOpen(port)) throw new Error(`port ${port} is in use (another \`npm run dev\`?); stop it or set ${name}`);
  }

  if (await portOpen(temporalPort)) {
    log(`using the Temporal server already listening on 127.0.0.1:${temporalPort}`);
  } else {
    log("starting the Temporal dev server (first run builds the CLI from the Go module proxy)");
    start("temporal", "bash", ["scripts/temporal.sh", "start"], {
      TEMPORAL_PORT: String(temporalPort),
      TEMPORAL_HTTP_PORT: String(temporalHttpPort),
      TEMPORAL_METRICS_PORT: String(temporalMetricsPort),
    });
    // Building the CLI on a fresh machine takes minutes.
    await waitFor("Temporal", () => portOpen(temporalPort), 900_000);
  }

  log("applying D1 migrations (local)");
  wrangler(["d1", "migrations", "apply", "DB", "--local", "--persist-to", stateDir]);
  await seed(key);

  // wrangler.toml [vars] can be overridden from the environment for a session.
  const varOverrides = [
    "RUN_WAIT_DEFAULT_MS",
    "RUN_WATCHDOG_QUIET_MS",
    "SSE_KEEPALIVE_MS",
    "RUN_STREAM_MAX_SUBSCRIBERS",
    "MAX_OPEN_STREAMS_PER_KEY",
    "MAX_OPEN_RUNS_PER_ORGANIZATION",
    "CORS_ORIGINS",
    "RATE_LIMIT_PER_MINUTE",
    "PROMPT_RUN_MAX_MS",
    "CODE_RUN_CREDIT_HOLD",
    "JWT_JWKS_URL",
    "JWT_PUBLIC_KEY",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_ORG_CLAIM",
    "WEBHOOK_RETRY_BASE_MS",
    "WEBHOOK_RETRY_WINDOW_MS",
    "WEBHOOK_TIMEOUT_MS",
  ]
    .filter((name) => env[name] !== undefined)
    .flatMap((name) => ["--var", `${name}:${env[name]}`]);
  const edge = start(
    "edge",
    "wrangler",
    [
      // BENCH ONLY: another entry (bench/worker-entry.ts counts D1 statements) or config (bench/geography); never set otherwise.
      "dev",
      ...(env.OUTRIDER_EDGE_ENTRY ? [env.OUTRIDER_EDGE_ENTRY] : []),
      ...(env.OUTRIDER_WRANGLER_CONFIG ? ["--config", env.OUTRIDER_WRANGLER_CONFIG] : []),
      "--ip",
      "127.0.0.1",
      "--port",
      String(edgePort),
      "--persist-to",
      stateDir,
      "--var",
      `HOST_URL:http://127.0.0.1:${hostPort}`,
      ...varOverrides,
      // Local development may receive webhooks on http://127.0.0.1 (dev only; never set in production).
      "--var",
      `WEBHOOK_ALLOW_LOOPBACK_HTTP:${env.WEBHOOK_ALLOW_LOOPBACK_HTTP ?? "1"}`,
      // and skips webhook hosts' DNS lookups, as it may run offline (dev only; production looks them up).
      "--var",
      `WEBHOOK_DNS_RESOLVER:${env.WEBHOOK_DNS_RESOLVER ?? "off"}`,
      "--show-interactive-dev-session=false",
      "--inspector-port",
      String(inspectorPort),
    ],
    {
      HOST_SHARED_SECRET: sharedSecret,
      STREAM_TOKEN_SECRET: streamTokenSecret,
      ADMIN_API_KEY: adminKey,
      INTERNAL_SERVICE_SECRET: internalSecret,
      JWT_SECRET: jwtSecret,
      WEBHOOK_SECRET_KEYS: webhookSecretKeys,
      WRANGLER_SEND_METRICS: "false",
      // wrangler dev's local trace collector (its local explorer's traces) receives every
      // request's and every Durable Object call's tail events on workerd's one thread, next to
      // the Worker, the DOs and local D1: about 1 ms of CPU per request here. Production's
      // observability runs outside the request, so it is off unless the caller turns it on
      // (X_LOCAL_OBSERVABILITY=true npm run dev): docs/configuration.md.
      X_LOCAL_OBSERVABILITY: env.X_LOCAL_OBSERVABILITY ?? "false",
    },
  );
  await waitFor("edge Worker", async () => (await fetch(`http://127.0.0.1:${edgePort}/health`).catch(() => null))?.ok === true);
  // BENCH ONLY (bench/worker-socket.ts): the host pushes to the Worker's own socket, past wrangler's dev proxy.
  const workerSocket = env.OUTRIDER_BENCH_WORKER_SOCKET === "1" ? await findWorkerSocket(edge.pid!, [edgePort, inspectorPort]) : null;

  // The stand-in for paid LLM providers: used for every provider whose API key is not set.
  if (env.OUTRIDER_LOCAL_LLM !== "false") {
    start("llm", "tsx", ["host/local-llm/server.ts"], { LOCAL_LLM_PORT: String(localLlmPort) });
    await waitFor("local LLM server", () => portOpen(localLlmPort));
  }

  // OUTRIDER_START_HOST=false leaves the host to the caller (the fault tests start and kill it).
  const startHost = env.OUTRIDER_START_HOST !== "false";
  let catalogPublished = !startHost;
  if (startHost)
    start(
      "host",
      "tsx",
      ["host/main.ts"],
      {
        HOST_SHARED_SECRET: sharedSecret,
        HOST_PORT: String(hostPort),
        TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
        EDGE_URL: workerSocket ?? `http://127.0.0.1:${edgePort}`,
        LOCAL_LLM_PORT: String(localLlmPort),
        // The host's journal of activities' run events (host/run-event-journal.ts), with the rest of the state.
        HOST_RUN_EVENT_JOURNAL: join(stateDir, "host-run-events.sqlite"),
      },
      (line) => {
        if (line.includes("published") && line.includes("workflows")) catalogPublished = true;
      },
    );
  await waitFor("Node host", async () => catalogPublished);

  console.log(
    [
      "",
      "  Outrider is running (development mode)",
      `  API          http://127.0.0.1:${edgePort}`,
      ...(workerSocket ? [`  Worker socket ${workerSocket} (bench only: past wrangler's dev proxy)`] : []),
      `  Node host    ${startHost ? `http://127.0.0.1:${hostPort}` : "not started (OUTRIDER_START_HOST=false)"}`,
      `  Temporal     127.0.0.1:${temporalPort}`,
      `  Local LLM    http://127.0.0.1:${localLlmPort}/v1 (for providers without an API key)`,
      `  Dev API key  ${key}`,
      `  Admin key    ${adminKey} (dev only; .outrider/dev-admin-key)`,
      `  Internal     ${env.INTERNAL_SERVICE_SECRET ? "INTERNAL_SERVICE_SECRET (from the environment)" : ".outrider/dev-internal-secret"} (dev only; Workflow Runs API internal secret)`,
      "",
      `  curl -X POST http://127.0.0.1:${edgePort}/workflow/run -H "Authorization: Bearer ${key}" \\`,
      `    -H 'Content-Type: application/json' -d '{"workflowName":"hello","input":{"name":"Ada"}}'`,
      `  curl -X POST http://127.0.0.1:${edgePort}/api/v1/run/${DEV_PROMPT_WORKFLOW.id} -H "Authorization: Bearer ${key}" \\`,
      `    -H 'Content-Type: application/json' -d '{"topic":"durable execution","audience":"a new engineer"}'`,
      "",
      "OUTRIDER_READY",
    ].join("\n"),
  );
}

main().catch((err) => {
  console.error(`[dev] ${err instanceof Error ? err.message : String(err)}`);
  void stop(1);
});
