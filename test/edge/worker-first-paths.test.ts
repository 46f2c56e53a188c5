/// <reference types="vite/client" />
/**
 * wrangler.toml's `[assets] run_worker_first`: the API's paths go to the Worker without a look
 * among the static files first. A route missing from the list still works (the lookup finds no
 * file and falls through to the Worker), only slower, so nothing else would notice it: this test
 * does. The patterns are matched as Cloudflare's router matches them: `*` is any run of
 * characters, the whole path must match.
 */
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { SCALAR_SCRIPT_PATH } from "../../src/routes/docs-assets.ts";
import { VIEWER_ASSETS } from "../../src/routes/viewer/page.ts";
import wranglerToml from "../../wrangler.toml?raw";

/** The list in wrangler.toml, read once. */
const workerFirstPatterns: string[] = (() => {
  const line = /^run_worker_first\s*=\s*(\[.*\])\s*$/m.exec(wranglerToml);
  if (!line) throw new Error("wrangler.toml has no run_worker_first list");
  return JSON.parse(line[1]!) as string[];
})();

const globToRegExp = (glob: string) =>
  new RegExp(
    `^${glob
      .split("*")
      .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
      .join(".*")}$`,
  );
const workerFirstRegExps = workerFirstPatterns.map(globToRegExp);

const goesToWorkerFirst = (path: string) => workerFirstRegExps.some((pattern) => pattern.test(path));

/** A concrete path for a route pattern: each `:param` (with any `{regex}`) becomes a sample segment. */
const samplePath = (routePath: string) => routePath.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, "sample-id");

describe("run_worker_first (wrangler.toml)", () => {
  it("lists every route the Worker serves", () => {
    const routes = createApp().routes.filter((r) => r.method !== "ALL" && !r.path.includes("*"));
    expect(routes.length).toBeGreaterThan(35);
    const missing = routes.map((r) => r.path).filter((path) => !goesToWorkerFirst(samplePath(path)));
    expect([...new Set(missing)]).toEqual([]);
  });

  it("leaves the static files' paths to the static files", () => {
    for (const path of [SCALAR_SCRIPT_PATH, VIEWER_ASSETS.script, VIEWER_ASSETS.style]) expect(goesToWorkerFirst(path)).toBe(false);
  });

  it("matches as the router does: whole paths, `*` across segments", () => {
    expect(goesToWorkerFirst("/workflow/a/runs/b/history/stream")).toBe(true);
    expect(goesToWorkerFirst("/healthz")).toBe(false);
    expect(goesToWorkerFirst("/viewer/workflow/x")).toBe(false);
  });
});
