import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./app-env.ts";
import { ApiError, errorResponse, handleError } from "./errors.ts";
import { corsForConfiguredOrigins } from "./middleware/cors/index.ts";
import { requestId } from "./middleware/request-id/index.ts";
import { noSniff } from "./middleware/no-sniff/index.ts";
import { registerAdminApi } from "./routes/admin/index.ts";
import { registerHealth } from "./routes/health.ts";
import { registerProbes } from "./routes/probes.ts";
import { registerOpenApi } from "./routes/openapi.ts";
import { registerInternalApi } from "./routes/internal/index.ts";
import { registerPublishedRunApi } from "./routes/published-run/index.ts";
import { registerWorkflowRunsApi } from "./routes/workflow-runs/index.ts";
import { registerWorkflowApi } from "./routes/workflow/index.ts";
import { registerViewer } from "./routes/viewer/index.ts";
import { documentIdempotency } from "./openapi/idempotency.ts";
import { cutText } from "./shared/text-limits.ts";

export function createApp() {
  const app = new OpenAPIHono<AppEnv>();
  app.use("*", requestId());
  app.use("*", noSniff());
  app.use("*", corsForConfiguredOrigins());
  registerHealth(app);
  registerProbes(app);
  registerOpenApi(app);
  registerInternalApi(app);
  registerWorkflowApi(app);
  registerViewer(app);
  registerPublishedRunApi(app);
  registerWorkflowRunsApi(app);
  registerAdminApi(app);
  documentIdempotency(app);
  app.notFound((c) => errorResponse(c, routeNotFound(c.req.method, new URL(c.req.url).pathname)));
  app.onError(handleError);
  return app;
}

/**
 * The most of an unknown route's path (and method) the 404 quotes: both are the caller's, and a
 * 10,000-character path need not come back whole.
 */
const MAX_QUOTED_PATH = 200;
const MAX_QUOTED_METHOD = 16;

const routeNotFound = (method: string, path: string) =>
  new ApiError("route_not_found", `no route ${cutText(method, MAX_QUOTED_METHOD)} ${cutText(path, MAX_QUOTED_PATH)}`);
