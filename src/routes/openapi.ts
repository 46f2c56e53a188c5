import type { App } from "../app-env.ts";
import { documentRoute, registerSecuritySchemes } from "../openapi/document.ts";
import { z } from "zod";

export const OPENAPI_INFO = {
  title: "Outrider API",
  version: "1.0.0",
  description:
    "Durable AI workflows behind an edge API. Three families share one set of runs: the Workflow API (`/workflow`), the published run API (`/api/v1/run`) and the Workflow Runs API (`/api/v1/workflow-runs`); plus the operators' admin API (`/admin/v1`). Errors of the Workflow API (and `/ready`, `/heartbeat`) use Output's envelope (`OutputError`: `error` is the error's name, plus Outrider's `code`); the other families share `Error`. Every authenticated response carries `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset`.",
};

/** The reference page: Scalar's API reference (loaded from its CDN by the reader's browser) over /openapi.json. */
const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Outrider API reference</title></head>
<body>
<noscript>The interactive reference needs JavaScript. The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<script id="api-reference" data-url="/openapi.json"></script>
<script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference@1"></script>
</body>
</html>`;

/** GET /openapi.json (OpenAPI 3.1, generated from the routes' zod schemas) and GET /docs. */
export function registerOpenApi(app: App) {
  registerSecuritySchemes(app);
  documentRoute(app, { method: "get", path: "/openapi.json", tag: "Reference", auth: "none", summary: "This document (OpenAPI 3.1)", responses: { 200: { description: "OpenAPI 3.1", schema: z.record(z.string(), z.unknown()) } } });
  documentRoute(app, { method: "get", path: "/docs", tag: "Reference", auth: "none", summary: "Interactive API reference", responses: { 200: { description: "HTML page", schema: z.string(), contentType: "text/html" } } });
  app.get("/openapi.json", (c) => {
    const origin = new URL(c.req.url).origin;
    return c.json(app.getOpenAPI31Document({ openapi: "3.1.0", info: OPENAPI_INFO, servers: [{ url: origin }] }));
  });
  app.get("/docs", (c) => c.html(DOCS_PAGE));
}
