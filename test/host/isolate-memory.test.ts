/**
 * What one tenant request makes the edge build must fit in a Workers isolate (128 MB, shared by
 * every request and Durable Object in it). workerd here does not enforce that limit, so these run
 * the edge's code in a Node child whose heap is capped at half of it: code that builds hundreds of
 * MB from a 1 MiB body dies there, as the isolate would in production (and with it every other
 * request in it).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const HEAP_LIMIT_MB = 64;
const root = resolve(import.meta.dirname, "../..");

/** Runs `body` (a TypeScript module's text) in Node with the capped heap; its exit code and output. */
function runCapped(body: string): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), "isolate-memory-"));
  try {
    const script = join(dir, "check.ts");
    writeFileSync(script, body);
    const child = spawnSync(
      process.execPath,
      ["--experimental-transform-types", "--no-warnings", `--max-old-space-size=${HEAP_LIMIT_MB}`, script],
      { encoding: "utf8", timeout: 60_000 },
    );
    return { status: child.status, output: `${child.stdout}${child.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe(`the edge's work on a hostile body fits in ${HEAP_LIMIT_MB} MB of heap`, () => {
  it("security: a published prompt run's body of 80,000 unknown keys, against 60 long variable names, is a 400, not hundreds of MB of issues", () => {
    const { status, output } = runCapped(`
      import { checkVariables } from ${JSON.stringify(join(root, "src/services/prompt-runs.ts"))};
      const names = Array.from({ length: 60 }, (_, i) => "variable_" + String(i).padStart(2, "0") + "_" + "v".repeat(27));
      const body: Record<string, string> = {};
      for (let i = 0; i < 80_000; i++) body["k" + i] = "";
      try {
        checkVariables(names, body);
        console.log("accepted");
      } catch (err) {
        const e = err as { code?: string; issues?: unknown[] };
        console.log("refused", e.code, e.issues?.length);
      }
    `);
    expect(output).toContain("refused invalid_input 21");
    expect(status).toBe(0);
  });
});
