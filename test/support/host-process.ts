/** Runs the Node host as its own process, so fault tests can kill and restart it. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { waitForOutput } from "./process-output.ts";

const root = resolve(import.meta.dirname, "../..");

export interface HostProcess {
  /** SIGKILL by default: a crash, not a graceful stop. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  output(): string;
}

export async function startHostProcess(env: Record<string, string>, timeoutMs = 120_000): Promise<HostProcess> {
  // A journal of its own unless the test names one (one that a restarted host must take up), in a
  // folder of its own that goes with the host once it is killed.
  const ownJournalDir = env.HOST_RUN_EVENT_JOURNAL ? null : mkdtempSync(join(tmpdir(), "outrider-host-journal-"));
  const child: ChildProcess = spawn(resolve(root, "node_modules/.bin/tsx"), ["host/main.ts"], {
    cwd: root,
    env: {
      ...process.env,
      HOST_LOG_LEVEL: "WARN",
      ...(ownJournalDir ? { HOST_RUN_EVENT_JOURNAL: join(ownJournalDir, "host-run-events.sqlite") } : {}),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const removeOwnJournal = () => {
    if (ownJournalDir) rmSync(ownJournalDir, { recursive: true, force: true });
  };
  const startup = waitForOutput(child, /published \d+ workflows/, timeoutMs, "host");
  try {
    await startup.done;
  } catch (err) {
    removeOwnJournal();
    throw err;
  }
  return {
    output: startup.output,
    async kill(signal = "SIGKILL") {
      if (child.exitCode !== null || child.signalCode !== null || !child.pid) return removeOwnJournal();
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-child.pid, signal);
      await exited;
      removeOwnJournal();
    },
  };
}
