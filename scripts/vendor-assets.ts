/**
 * Puts the browser code the API reference page needs into build/assets/vendor/ (the Worker's
 * static assets, wrangler.toml [assets]), from node_modules: no CDN at page load. Part of
 * scripts/build-assets.ts. Fails if the installed @scalar/api-reference is not the version the
 * page names.
 *
 *   node scripts/vendor-assets.ts
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { SCALAR_SCRIPT_PATH, SCALAR_VERSION } from "../src/routes/docs-assets.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const STATIC_DIR = join(root, "build/assets");

export function vendorAssets(): void {
  const pkgDir = join(root, "node_modules/@scalar/api-reference");
  const installed = (JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { version: string }).version;
  if (installed !== SCALAR_VERSION) {
    throw new Error(
      `@scalar/api-reference ${installed} is installed but src/routes/docs-assets.ts names ${SCALAR_VERSION}: run npm install, or update both together`,
    );
  }
  rmSync(join(STATIC_DIR, "vendor"), { recursive: true, force: true });
  mkdirSync(join(STATIC_DIR, "vendor"), { recursive: true });
  copyFileSync(join(pkgDir, "dist/browser/standalone.js"), join(STATIC_DIR, SCALAR_SCRIPT_PATH));
}

/** Cloudflare's static-asset headers for /vendor: versioned names never change, so cache them for a year. */
export const VENDOR_HEADERS = [
  "/vendor/*",
  "  Cache-Control: public, max-age=31536000, immutable",
  "  X-Content-Type-Options: nosniff",
].join("\n");
