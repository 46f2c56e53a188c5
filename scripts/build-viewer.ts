/**
 * Builds the run viewer's static assets into build/assets/viewer/ (git-ignored):
 *
 *   run-viewer.js    src/routes/viewer/client/run-viewer.ts bundled by esbuild (ES module, ES2022)
 *   run-viewer.css   src/routes/viewer/client/run-viewer.css
 *
 * Part of scripts/build-assets.ts, which wrangler runs before `wrangler dev` and `wrangler deploy`
 * ([build] in wrangler.toml); build/assets is served as the Worker's static assets ([assets]).
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { build } from "esbuild";

const root = resolve(import.meta.dirname, "..");
const client = resolve(root, "src/routes/viewer/client");
const assets = resolve(root, "build/assets");

export async function buildViewer(): Promise<void> {
  mkdirSync(resolve(assets, "viewer"), { recursive: true });
  await build({
    entryPoints: [resolve(client, "run-viewer.ts")],
    outfile: resolve(assets, "viewer/run-viewer.js"),
    bundle: true,
    format: "esm",
    target: "es2022",
    platform: "browser",
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(resolve(client, "run-viewer.css"), resolve(assets, "viewer/run-viewer.css"));
}

/** Static-asset headers for /viewer: revalidated on each load (the names are not versioned). */
export const VIEWER_HEADERS = "/viewer/*\n  X-Content-Type-Options: nosniff\n  Cache-Control: no-cache";
