/**
 * Builds the Worker's static assets into build/assets/ (git-ignored; wrangler.toml [assets]):
 * the API reference's pinned Scalar bundle (vendor-assets.ts) and the run viewer's script and
 * stylesheet (build-viewer.ts), plus Cloudflare's `_headers` file for both. wrangler runs this
 * before `wrangler dev` (npm run dev), `wrangler deploy` and `npm run deploy:dry-run` ([build]);
 * the edge test config runs it too.
 *
 *   node scripts/build-assets.ts
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildViewer, VIEWER_HEADERS } from "./build-viewer.ts";
import { STATIC_DIR, VENDOR_HEADERS, vendorAssets } from "./vendor-assets.ts";

export async function buildAssets(): Promise<void> {
  vendorAssets();
  await buildViewer();
  writeFileSync(join(STATIC_DIR, "_headers"), `${VENDOR_HEADERS}\n${VIEWER_HEADERS}\n`);
}

if (import.meta.main) await buildAssets();
