/** Runs the Node host as its own process, so fault tests can kill and restart it. */
import { spawn, type ChildProcess } from "node:child_process";
import { resolve } from "node:path";
import { waitForOutput } from "./process-output.ts";

const root = resolve(import.meta.dirname, "../..");

export interface HostProcess {
  /** SIGKILL by default: a crash, not a graceful stop. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  output(): string;
}

export async function startHostProcess(env: Record<string, string>, timeoutMs = 120_000): Promise<HostProcess> {
  const child: ChildProcess = spawn(resolve(root, "node_modules/.bin/tsx"), ["host/main.ts"], {
    cwd: root,
    env: { ...process.env, HOST_LOG_LEVEL: "WARN", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const startup = waitForOutput(child, /published \d+ workflows/, timeoutMs, "host");
  await startup.done;
  return {
    output: startup.output,
    async kill(signal = "SIGKILL") {
      if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-child.pid, signal);
      await exited;
    },
  };
}
