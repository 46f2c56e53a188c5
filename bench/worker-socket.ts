/**
 * BENCH ONLY: the edge Worker's own socket under `wrangler dev`, behind wrangler's dev proxy.
 *
 * `wrangler dev` runs two workerd processes: its proxy on the port it was given (a Worker that hands
 * every request to a Durable Object, which fetches the user Worker), and the user Worker's own
 * runtime on a port chosen at random. In production there is no such proxy, and on this 2-core
 * machine it costs about 2 ms a request plus a process's CPU. A benchmark that wants the edge
 * without it (`--worker-socket`) asks `npm run dev` (OUTRIDER_BENCH_WORKER_SOCKET=1) to find the
 * user Worker's socket, which it then gives to the host for its pushes and prints for the bench.
 *
 * Linux only: it reads /proc for the listening TCP sockets of wrangler's workerd processes, and takes
 * the one whose GET /health is this Worker's.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

const LISTEN = "0A"; // TCP state in /proc/net/tcp
const PROBE_TIMEOUT_MS = 2_000;

/** pid -> parent pid, for every process we can read. */
function parentPids(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(Number(entry), ppid);
    } catch {
      /* exited meanwhile */
    }
  }
  return parents;
}

function descendants(rootPid: number): number[] {
  const parents = parentPids();
  const found = new Set([rootPid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parents)
      if (found.has(ppid) && !found.has(pid)) {
        found.add(pid);
        grew = true;
      }
  }
  return [...found];
}

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: "utf8" });
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match) inodes.add(match[1]!);
    }
  } catch {
    /* exited meanwhile */
  }
  return inodes;
}

/** Ports of the IPv4 TCP sockets listening on 127.0.0.1 whose inode is in `inodes`. */
function listeningLoopbackPorts(inodes: Set<string>): number[] {
  const ports: number[] = [];
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || fields[3] !== LISTEN || !inodes.has(fields[9]!)) continue;
    const [address, port] = fields[1]!.split(":");
    if (address === "0100007F") ports.push(Number.parseInt(port!, 16));
  }
  return ports;
}

async function isThisWorker(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    return res.ok && ((await res.json()) as { service?: string }).service === "outrider-edge";
  } catch {
    return false;
  }
}

/** The URL of the user Worker's own socket among wrangler's (pid `wranglerPid`) workerd processes, other than `exclude`. */
export async function findWorkerSocket(wranglerPid: number, exclude: number[]): Promise<string> {
  const workerds = descendants(wranglerPid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "workerd";
    } catch {
      return false;
    }
  });
  for (const pid of workerds)
    for (const port of listeningLoopbackPorts(socketInodes(pid)))
      if (!exclude.includes(port) && (await isThisWorker(port))) return `http://127.0.0.1:${port}`;
  throw new Error(`no socket of wrangler's workerd processes (${workerds.join(", ") || "none found"}) answers as the edge Worker`);
}
