/** Writes one benchmark's section of docs/BENCHMARKS.md, replacing its previous figures. */
import { readFileSync, writeFileSync } from "node:fs";
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
