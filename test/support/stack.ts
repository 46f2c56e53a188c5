/**
 * Starts the whole stack exactly as the README's quick start does (`node scripts/dev.ts`, which is
 * what `npm run dev` runs), on free ports chosen at run time (every port it and its children open:
 * edge, wrangler's inspector, host, local LLM, Temporal's gRPC, HTTP and metrics) and a throwaway
 * D1 state directory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SignJWT } from "jose";
import { generateApiKey } from "../../src/shared/api-keys.ts";
import { freePorts } from "./ports.ts";
import { waitForOutput } from "./process-output.ts";
import { portOpen } from "./temporal-server.ts";

const root = resolve(import.meta.dirname, "../..");
const READY_MARKER = /OUTRIDER_READY/;
/** HS256 secret of the stacks' Workflow Runs API JWTs (test-only value). */
export const TEST_JWT_SECRET = "test-jwt-secret-for-the-e2e-stack-only";
/** The audience a stack with a JWKS (JWT_JWKS_URL) checks: a JWKS needs one. */
export const TEST_JWT_AUDIENCE = "outrider-e2e";

/** An HS256 Workflow Runs API token for a test stack (TEST_JWT_SECRET, TEST_JWT_AUDIENCE). */
export function testJwt(organizationId: string, options: { subject?: string; expiresIn?: string } = {}): Promise<string> {
  const jwt = new SignJWT({ org_id: organizationId }).setProtectedHeader({ alg: "HS256" }).setAudience(TEST_JWT_AUDIENCE);
  if (options.subject) jwt.setSubject(options.subject);
  return jwt.setExpirationTime(options.expiresIn ?? "30m").sign(new TextEncoder().encode(TEST_JWT_SECRET));
}

/** Every port a stack opens. */
export interface StackPorts {
  edge: number;
  /** wrangler dev's inspector (Chrome DevTools protocol). */
  inspector: number;
  host: number;
  localLlm: number;
  temporal: number;
  temporalHttp: number;
  temporalMetrics: number;
}

export async function freeStackPorts(): Promise<StackPorts> {
  const [edge, inspector, host, localLlm, temporal, temporalHttp, temporalMetrics] = (await freePorts(7)) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return { edge, inspector, host, localLlm, temporal, temporalHttp, temporalMetrics };
}

/**
 * Set to 1 to keep each stack's state directory (local D1, Durable Object storage, stack.log) after
 * it stops, to look into a failure. Otherwise stop() deletes it: a full `npm test` creates about 40
 * stacks, and their state (tens of MB to 0.5 GB each, in RAM when the benchmarks use tmpfs) would
 * otherwise pile up in the temp directory run after run.
 */
export const KEEP_STATE_ENV = "OUTRIDER_KEEP_TEST_STATE";

export interface RunningStack {
  baseUrl: string;
  /** BENCH ONLY (options.workerSocket): the edge Worker's own socket, past wrangler's dev proxy (bench/worker-socket.ts). */
  workerUrl?: string;
  ports: StackPorts;
  /** The pid of `npm run dev`, under which every process of the stack runs (for the benchmarks' CPU split). */
  pid: number;
  apiKey: string;
  /** The admin API key of this stack (test-only value). */
  adminKey: string;
  /** The INTERNAL_SERVICE_SECRET of this stack (test-only value), for trusted Workflow Runs API calls. */
  internalSecret: string;
  /** Deleted by stop() unless KEEP_STATE_ENV is set. */
  stateDir: string;
  temporalAddress: string;
  /** The local OpenAI-compatible server of this stack. */
  localLlmUrl: string;
  stop(): Promise<void>;
  output(): string;
}

export interface StackOptions {
  /** Ports to use instead of free ones (e.g. the gRPC port of a Temporal server the caller started). */
  ports?: Partial<StackPorts>;
  /** false: start Temporal and the edge only; the caller runs the host (see host-process.ts). */
  startHost?: boolean;
  /** true: a Temporal server the caller started already listens on the port (dev reuses it). */
  reuseTemporal?: boolean;
  /** Extra environment for `npm run dev` (e.g. RUN_WATCHDOG_QUIET_MS, HOST_SHARED_SECRET). */
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Directory to create the stack's state directory in (default: the OS temp dir). */
  stateRoot?: string;
  /** BENCH ONLY: find the Worker's own socket (workerUrl), and have the host push to it. */
  workerSocket?: boolean;
}

/**
 * What a stack that could not listen says. Its ports are free when freeStackPorts() picks them,
 * but until each process listens, another process can be given one (for a connection of its own).
 */
const PORT_TAKEN = /EADDRINUSE|address already in use|port \d+ is (taken|in use)/i;
/** Startups tried, each on fresh ports, when a port was taken (never when the caller chose the ports). */
const STACK_START_ATTEMPTS = 3;

export async function startStack(options: StackOptions = {}): Promise<RunningStack> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOn({ ...(await freeStackPorts()), ...options.ports }, options);
    } catch (err) {
      const callerPorts = Object.keys(options.ports ?? {}).length > 0;
      if (callerPorts || attempt >= STACK_START_ATTEMPTS || !PORT_TAKEN.test((err as Error).message)) throw err;
      const lines = (err as Error).message.split("\n");
      // Which port, and (the last line) where that attempt's state and log were kept.
      console.warn(
        `test stack: a port was taken while it started (attempt ${attempt}); starting again on fresh ports\n  ${lines.find((l) => PORT_TAKEN.test(l))}\n  ${lines.at(-1)}`,
      );
    }
  }
}

async function startStackOn(ports: StackPorts, options: StackOptions): Promise<RunningStack> {
  const timeoutMs = options.timeoutMs ?? 900_000;
  const mustBeFree = [
    ports.edge,
    ports.inspector,
    ports.host,
    ports.localLlm,
    ...(options.reuseTemporal ? [] : [ports.temporal, ports.temporalHttp, ports.temporalMetrics]),
  ];
  for (const port of mustBeFree) {
    if (await portOpen(port)) throw new Error(`port ${port} is taken; the test stack needs it`);
  }
  const stateDir = mkdtempSync(join(options.stateRoot ?? tmpdir(), "outrider-e2e-"));
  const apiKey = generateApiKey().key;
  const adminKey = `test_admin_${randomBytes(16).toString("hex")}`;
  const internalSecret = options.env?.INTERNAL_SERVICE_SECRET ?? `test_internal_${randomBytes(16).toString("hex")}`;
  const child: ChildProcess = spawn(process.execPath, ["scripts/dev.ts"], {
    cwd: root,
    env: {
      ...process.env,
      PATH: `${resolve(root, "node_modules/.bin")}:${process.env.PATH}`,
      OUTRIDER_PORT: String(ports.edge),
      OUTRIDER_INSPECTOR_PORT: String(ports.inspector),
      HOST_PORT: String(ports.host),
      TEMPORAL_PORT: String(ports.temporal),
      TEMPORAL_HTTP_PORT: String(ports.temporalHttp),
      TEMPORAL_METRICS_PORT: String(ports.temporalMetrics),
      OUTRIDER_STATE_DIR: stateDir,
      OUTRIDER_DEV_API_KEY: apiKey,
      TEMPORAL_LOG_LEVEL: "error",
      HOST_LOG_LEVEL: "WARN",
      OUTRIDER_START_HOST: String(options.startHost ?? true),
      LOCAL_LLM_PORT: String(ports.localLlm),
      // The SSRF guard refuses loopback; the local LLM server's /pages (summarize_url's test
      // pages) are allowed by configuration, on their port only (docs/configuration.md).
      OUTBOUND_HTTP_ALLOW: `127.0.0.1:${ports.localLlm}`,
      // Tests and benchmarks drive one key hard; the limiter itself is tested in test/edge.
      RATE_LIMIT_PER_MINUTE: "1000000",
      // Benchmarks start runs faster than this machine ends them, so runs queue up in one
      // organization; the open-run limit itself is tested in test/edge.
      MAX_OPEN_RUNS_PER_ORGANIZATION: "1000000",
      ADMIN_API_KEY: adminKey,
      INTERNAL_SERVICE_SECRET: internalSecret,
      JWT_SECRET: TEST_JWT_SECRET,
      // Test-only key encrypting webhook signing secrets in this stack's D1.
      WEBHOOK_SECRET_KEYS: `test1:${randomBytes(32).toString("base64")}`,
      // Short enough for a test to see a prompt run time out (local/slow* models), long enough for the others.
      PROMPT_RUN_MAX_MS: "10000",
      ...(options.workerSocket ? { OUTRIDER_BENCH_WORKER_SOCKET: "1" } : {}),
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stateRemoved = false;
  const stopProcesses = async () => {
    if (child.exitCode !== null || !child.pid) return;
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(-child.pid, "SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  };
  const stop = async () => {
    await stopProcesses();
    if (process.env[KEEP_STATE_ENV] === "1" || stateRemoved) return;
    stateRemoved = true;
    rmSync(stateDir, { recursive: true, force: true });
  };
  const startup = waitForOutput(child, READY_MARKER, timeoutMs, "npm run dev");
  // Everything the stack logs (edge, host, Temporal), for tests that read it (no secret in logs).
  const logFile = join(stateDir, "stack.log");
  for (const stream of [child.stdout!, child.stderr!])
    stream.on("data", (chunk: Buffer) => {
      if (!stateRemoved) appendFileSync(logFile, chunk);
    });
  await startup.done.catch(async (err) => {
    await stopProcesses(); // the state (and stack.log) stays, to look into why it did not start
    throw new Error(`${(err as Error).message}\n(the stack's state and whole log are kept in ${stateDir})`);
  });
  const workerUrl = options.workerSocket ? /Worker socket (http:\/\/\S+)/.exec(startup.output())?.[1] : undefined;
  if (options.workerSocket && !workerUrl) {
    await stop();
    throw new Error("npm run dev printed no Worker socket");
  }
  return {
    baseUrl: `http://127.0.0.1:${ports.edge}`,
    workerUrl,
    ports,
    pid: child.pid!,
    apiKey,
    adminKey,
    internalSecret,
    stateDir,
    temporalAddress: `127.0.0.1:${ports.temporal}`,
    localLlmUrl: `http://127.0.0.1:${ports.localLlm}`,
    stop,
    output: startup.output,
  };
}
