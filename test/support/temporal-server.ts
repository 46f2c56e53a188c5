/**
 * Starts a real Temporal dev server (the official CLI, via scripts/temporal.sh) for a test run,
 * on its own port so it never collides with a developer's `npm run dev`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");

export function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    socket.once("connect", () => (socket.destroy(), done(true)));
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

export interface RunningTemporal {
  address: string;
  stop(): Promise<void>;
}

export async function startTemporal(port: number, extraEnv: Record<string, string> = {}): Promise<RunningTemporal> {
  if (await portOpen(port)) throw new Error(`port ${port} is taken; stop whatever listens there before running the tests`);
  const child: ChildProcess = spawn("bash", [resolve(root, "scripts/temporal.sh"), "start"], {
    cwd: root,
    env: { ...process.env, TEMPORAL_PORT: String(port), TEMPORAL_HTTP_PORT: String(port + 10), TEMPORAL_METRICS_PORT: String(port + 11), TEMPORAL_LOG_LEVEL: "error", ...extraEnv },
    stdio: ["ignore", "inherit", "inherit"],
    detached: true,
  });
  // The first run on a fresh machine builds the CLI (minutes); later runs start in seconds.
  await waitForPort(port, 900_000, "Temporal dev server");
  return {
    address: `127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null || !child.pid) return;
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-child.pid, "SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) process.kill(-child.pid, "SIGKILL");
    },
  };
}
