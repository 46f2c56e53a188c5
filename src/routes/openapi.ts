import type { App } from "../app-env.ts";
import { documentRoute, registerSecuritySchemes } from "../openapi/document.ts";
import { z } from "zod";
import { SCALAR_SCRIPT_PATH } from "./docs-assets.ts";
import { htmlPageHeaders } from "./page-headers.ts";

export const OPENAPI_INFO = {
  title: "Outrider API",
  version: "1.0.0",
  description:
    "Durable AI workflows behind an edge API. Three families share one set of runs: the Workflow API (`/workflow`), the published run API (`/api/v1/run`) and the Workflow Runs API (`/api/v1/workflow-runs`); plus the operators' admin API (`/admin/v1`). Errors of the Workflow API (and `/ready`, `/heartbeat`) use Output's envelope (`OutputError`: `error` is the error's name, plus Outrider's `code`); the other families share `Error`. Every response to a tenant's authenticated request carries `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (the admin API and `/internal` are not rate-limited).",
};

/**
 * The reference page: Scalar's API reference over /openapi.json. Its script is a pinned build
 * served from this origin (docs-assets.ts); configured by data attributes, so the page has no
 * inline script.
 */
export function docsPage(): string {
  const configuration = JSON.stringify({ withDefaultFonts: false, telemetry: false }).replace(/"/g, "&quot;");
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Outrider API reference</title></head>
<body>
<noscript>The interactive reference needs JavaScript. The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<script id="api-reference" data-url="/openapi.json" data-configuration="${configuration}"></script>
<script src="${SCALAR_SCRIPT_PATH}"></script>
</body>
</html>`;
}

/**
 * Headers of /docs: scripts only from this origin (the pinned Scalar build, no eval), requests,
 * images and fonts only to and from this origin, no framing. Users paste API
 * keys into this page: nothing from elsewhere may run on it.
 */
export function docsPageHeaders(): Record<string, string> {
  return htmlPageHeaders([
    "script-src 'self'",
    // Scalar, its theme and Vue add <style> elements and style attributes at run time. Styles
    // cannot run code, and img-src/font-src/connect-src keep CSS from sending anything elsewhere.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
  ]);
}

/** GET /openapi.json (OpenAPI 3.1, generated from the routes' zod schemas) and GET /docs. */
export function registerOpenApi(app: App) {
  registerSecuritySchemes(app);
  documentRoute(app, {
    method: "get",
    path: "/openapi.json",
    tag: "Reference",
    auth: "none",
    summary: "This document (OpenAPI 3.1)",
    responses: { 200: { description: "OpenAPI 3.1", schema: z.record(z.string(), z.unknown()) } },
  });
  documentRoute(app, {
    method: "get",
    path: "/docs",
    tag: "Reference",
    auth: "none",
    summary: "Interactive API reference",
    responses: { 200: { description: "HTML page", schema: z.string(), contentType: "text/html" } },
  });
  app.get("/openapi.json", (c) => {
    const origin = new URL(c.req.url).origin;
    return c.json(app.getOpenAPI31Document({ openapi: "3.1.0", info: OPENAPI_INFO, servers: [{ url: origin }] }));
  });
  app.get("/docs", (c) => c.body(docsPage(), 200, docsPageHeaders()));
}
