/**
 * Starts a real Temporal dev server (the official CLI, via scripts/temporal.sh) for a test run, on
 * free ports chosen at run time (gRPC, HTTP API and metrics), so it never collides with a
 * developer's `npm run dev` or with another test stack.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { resolve } from "node:path";
import { freePorts } from "./ports.ts";

const root = resolve(import.meta.dirname, "../..");

export function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      done(true);
    });
    socket.once("error", () => done(false));
  });
}

export async function waitForPort(port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await portOpen(port))) {
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within ${timeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Every port a Temporal dev server opens. */
export interface TemporalPorts {
  grpc: number;
  http: number;
  metrics: number;
}

export async function freeTemporalPorts(): Promise<TemporalPorts> {
  const [grpc, http, metrics] = (await freePorts(3)) as [number, number, number];
  return { grpc, http, metrics };
}

export interface RunningTemporal {
  address: string;
  /** The ports it listens on: start it again on the same ones (the fault tests restart it). */
  ports: TemporalPorts;
  stop(): Promise<void>;
}

/** Startups tried, each on fresh ports, when the server exits before it listens (never when the caller chose the ports). */
const TEMPORAL_START_ATTEMPTS = 3;

/** The server process ended before its gRPC port opened (most often: one of its ports was taken meanwhile). */
class TemporalExitedEarly extends Error {}

/**
 * `args` go to `temporal server start-dev` as they are (e.g. `--dynamic-config-value
 * history.maxTotalUpdates=2`, Temporal's own per-run limits set low).
 */
export async function startTemporal(
  options: { ports?: TemporalPorts; env?: Record<string, string>; args?: string[] } = {},
): Promise<RunningTemporal> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startTemporalOn(options.ports ?? (await freeTemporalPorts()), options.env, options.args);
    } catch (err) {
      if (options.ports || attempt >= TEMPORAL_START_ATTEMPTS || !(err instanceof TemporalExitedEarly)) throw err;
      console.warn(`Temporal dev server: ${err.message} (attempt ${attempt}); starting again on fresh ports`);
    }
  }
}

async function startTemporalOn(ports: TemporalPorts, env: Record<string, string> = {}, args: string[] = []): Promise<RunningTemporal> {
  if (await portOpen(ports.grpc)) throw new Error(`port ${ports.grpc} is taken; stop whatever listens there before running the tests`);
  const child: ChildProcess = spawn("bash", [resolve(root, "scripts/temporal.sh"), "start", ...args], {
    cwd: root,
    env: {
      ...process.env,
      TEMPORAL_PORT: String(ports.grpc),
      TEMPORAL_HTTP_PORT: String(ports.http),
      TEMPORAL_METRICS_PORT: String(ports.metrics),
      TEMPORAL_LOG_LEVEL: "error",
      ...env,
    },
    stdio: ["ignore", "inherit", "inherit"],
    detached: true,
  });
  // A server that exits (a port taken since it was picked) fails now, not after the wait below.
  const exitedEarly = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new TemporalExitedEarly(`exited with ${code} before it listened on ${ports.grpc}`))),
  );
  // The first run on a fresh machine builds the CLI (minutes); later runs start in seconds.
  await Promise.race([waitForPort(ports.grpc, 900_000, "Temporal dev server"), exitedEarly]);
  exitedEarly.catch(() => undefined); // a later exit (stop(), a fault test's kill) is not an error
  return {
    address: `127.0.0.1:${ports.grpc}`,
    ports,
    async stop() {
      if (child.exitCode !== null || !child.pid) return;
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-child.pid, "SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) process.kill(-child.pid, "SIGKILL");
    },
  };
}
