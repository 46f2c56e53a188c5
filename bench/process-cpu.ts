/**
 * BENCH ONLY: the CPU time each process of a local stack (test/support/stack.ts: `npm run dev`
 * and every process under it) used over a phase, read from /proc (Linux), so that a benchmark can
 * say where the machine's cores went: workerd (the Worker, every Durable Object and local D1),
 * Temporal's dev server, the Node host, and the benchmark itself.
 */
import { readdirSync, readFileSync } from "node:fs";

/** What a process of the stack is, from its command line. */
export type StackRole = "workerd" | "temporal" | "host" | "other";

const ROLES: Array<[StackRole, RegExp]> = [
  ["workerd", /workerd/],
  ["temporal", /temporal.* server start-dev/],
  ["host", /host\/main\.ts/],
];

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

interface Sample {
  /** CPU ticks of each process under the root, by pid. */
  ticks: Map<number, { role: StackRole; ticks: number }>;
  at: number;
}

/** CPU ticks of process `root` (the stack's `npm run dev`) and every process under it. */
function sample(root: number): Sample {
  const processes = new Map<number, { parent: number; ticks: number }>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command's closing parenthesis: state ppid pgrp … utime (14th) stime (15th).
      const fields = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]!.split(" ");
      processes.set(Number(entry), { parent: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // The process ended between the listing and the read.
    }
  }
  const underRoot = (pid: number): boolean => {
    for (let at = pid, hops = 0; at > 1 && hops < 32; at = processes.get(at)?.parent ?? 0, hops++) if (at === root) return true;
    return false;
  };
  const ticks = new Map<number, { role: StackRole; ticks: number }>();
  for (const [pid, { ticks: used }] of processes) {
    if (!underRoot(pid)) continue;
    try {
      const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      ticks.set(pid, { role: ROLES.find(([, pattern]) => pattern.test(command))?.[0] ?? "other", ticks: used });
    } catch {
      // Ended meanwhile.
    }
  }
  return { ticks, at: performance.now() };
}

/** Cores used on average over the phase (1 = one core busy all along), by role; `bench` is this process. */
export type CpuSplit = Record<StackRole | "bench", number>;

/** Runs `phase`, measuring the CPU that the stack's processes (under `root`) and this process used meanwhile. */
export async function withCpuSplit<T>(root: number, phase: () => Promise<T>): Promise<{ result: T; cpu: CpuSplit }> {
  const before = sample(root);
  const ownBefore = process.cpuUsage();
  const result = await phase();
  const after = sample(root);
  const own = process.cpuUsage(ownBefore);
  const seconds = (after.at - before.at) / 1000;
  const cpu: CpuSplit = { workerd: 0, temporal: 0, host: 0, other: 0, bench: (own.user + own.system) / 1e6 / seconds };
  for (const [pid, { role, ticks }] of after.ticks) {
    cpu[role] += (ticks - (before.ticks.get(pid)?.ticks ?? 0)) / TICKS_PER_SECOND / seconds;
  }
  for (const role of Object.keys(cpu) as Array<keyof CpuSplit>) cpu[role] = Math.round(cpu[role] * 100) / 100;
  return { result, cpu };
}
