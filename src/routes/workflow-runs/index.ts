import type { App } from "../../app-env.ts";
import { documentWorkflowRunsApi } from "./openapi.ts";
import { refuseEncodedBody } from "../../middleware/body-encoding/index.ts";
import { limitBody } from "../../middleware/body-limit/index.ts";
import { rateLimit } from "../../middleware/rate-limit/index.ts";
import { idempotencyKey } from "../../middleware/idempotency/index.ts";
import { serviceAuth } from "../../middleware/service-auth/index.ts";
import { opensStream } from "../../sse/stream-lease.ts";
import { registerCancel } from "./cancel.ts";
import { registerDetail } from "./detail.ts";
import { registerExecute } from "./execute.ts";
import { registerListAndDashboard } from "./list.ts";

const MAX_EXECUTE_BODY_BYTES = 1024 * 1024;

/** The Workflow Runs API (`/api/v1/workflow-runs`): JWT or trusted internal callers. */
export function registerWorkflowRunsApi(app: App) {
  // Hono's `/*` also matches the bare path (GET /api/v1/workflow-runs).
  app.use("/api/v1/workflow-runs/*", serviceAuth());
  // Before the rate limit: its call to the caller's RateLimiter takes a stream's place too.
  app.use("/api/v1/workflow-runs/:runId/stream", opensStream());
  app.use("/api/v1/workflow-runs/*", rateLimit());
  app.use("/api/v1/workflow-runs/*", limitBody(MAX_EXECUTE_BODY_BYTES));
  app.use("/api/v1/workflow-runs/*", refuseEncodedBody());
  app.use("/api/v1/workflow-runs/execute", idempotencyKey());
  app.use("/api/v1/workflow-runs/execute/stream", idempotencyKey());
  // Fixed paths before /:runId.
  registerExecute(app);
  registerCancel(app);
  registerListAndDashboard(app);
  registerDetail(app);
  documentWorkflowRunsApi(app);
}
