/** Writes one benchmark's section of docs/BENCHMARKS.md, replacing its previous figures. */
import { execFileSync } from "node:child_process";
import { accessSync, constants, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";

const FILE = resolve(import.meta.dirname, "../docs/BENCHMARKS.md");
const HEADER =
  "# Benchmarks\n\nFigures from `bench/`. Each section gives the command that produced it; this machine is noisy, so compare ratios within one run.\n";

export function writeSection(name: string, lines: string[]): void {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const section = [start, ...lines, end].join("\n");
  let doc: string;
  try {
    doc = readFileSync(FILE, "utf8");
  } catch {
    doc = HEADER;
  }
  const pattern = new RegExp(`${start}[\\s\\S]*${end}`);
  doc = pattern.test(doc) ? doc.replace(pattern, section) : `${doc.trimEnd()}\n\n${section}\n`;
  writeFileSync(FILE, doc);
  console.log(`wrote ${FILE}`);
}

export const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
export const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
export const round1 = (n: number) => Math.round(n * 10) / 10;

/** Memory-backed storage (tmpfs) on Linux; where the bench stacks keep the edge's local state unless told otherwise. */
const MEMORY_STATE_ROOT = "/dev/shm";

export type EdgeStateStorage = "memory" | "disk";

/**
 * Where a benchmark's stack keeps the edge's local state (the D1 database, every Durable Object's
 * SQLite file, R2). Temporal's dev server, the direct side of every comparison, keeps its whole
 * state in memory; on disk, the edge alone would pay for SQLite's fsyncs (about 30 per `hello` run
 * on this machine). So the benchmarks put the edge's state on tmpfs too, unless `disk` asks for
 * the temp dir's disk (or there is no tmpfs).
 */
export function benchStateRoot(disk: boolean): { root: string; storage: EdgeStateStorage } {
  if (!disk) {
    try {
      if (statSync(MEMORY_STATE_ROOT).isDirectory()) {
        accessSync(MEMORY_STATE_ROOT, constants.W_OK);
        return { root: MEMORY_STATE_ROOT, storage: "memory" };
      }
    } catch {
      /* no tmpfs here: disk */
    }
  }
  return { root: tmpdir(), storage: "disk" };
}

/** The checked-out commit (short), to label a benchmark's figures. */
export function currentCommit(): string {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: import.meta.dirname, encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
}

/**
 * Whether wrangler dev's local trace collector runs in the benchmark's edge: off unless
 * X_LOCAL_OBSERVABILITY=true (scripts/dev.ts); "on" measures the edge as every figure before
 * 2026-12-01 did. `commandPrefix` repeats the setting in a section's command.
 */
export function localTraceCollector(): { state: "on" | "off"; commandPrefix: string } {
  const on = process.env.X_LOCAL_OBSERVABILITY === "true";
  return { state: on ? "on" : "off", commandPrefix: on ? "X_LOCAL_OBSERVABILITY=true " : "" };
}
