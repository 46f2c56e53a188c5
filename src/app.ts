import { Hono } from "hono";
import type { AppEnv } from "./app-env.ts";
import { ApiError, errorResponse, handleError } from "./errors.ts";
import { corsForConfiguredOrigins } from "./middleware/cors/index.ts";
import { requestId } from "./middleware/request-id/index.ts";
import { registerAdminApi } from "./routes/admin/index.ts";
import { registerHealth } from "./routes/health.ts";
import { registerInternalApi } from "./routes/internal/index.ts";
import { registerPublishedRunApi } from "./routes/published-run/index.ts";
import { registerWorkflowRunsApi } from "./routes/workflow-runs/index.ts";
import { registerWorkflowApi } from "./routes/workflow/index.ts";

export function createApp() {
  const app = new Hono<AppEnv>();
  app.use("*", requestId());
  app.use("*", corsForConfiguredOrigins());
  registerHealth(app);
  registerInternalApi(app);
  registerWorkflowApi(app);
  registerPublishedRunApi(app);
  registerWorkflowRunsApi(app);
  registerAdminApi(app);
  app.notFound((c) => errorResponse(c, new ApiError("route_not_found", `no route ${c.req.method} ${new URL(c.req.url).pathname}`)));
  app.onError(handleError);
  return app;
}
