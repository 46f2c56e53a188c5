import type { App } from "../../app-env.ts";
import { documentWorkflowApi } from "./openapi.ts";
import { refuseEncodedBody } from "../../middleware/body-encoding/index.ts";
import { limitBody } from "../../middleware/body-limit/index.ts";
import { rateLimit } from "../../middleware/rate-limit/index.ts";
import { idempotencyKey } from "../../middleware/idempotency/index.ts";
import { apiKeyOrStreamToken } from "../../middleware/stream-token-auth/index.ts";
import { requireKeyScope } from "../../middleware/key-scope/index.ts";
import { registerCatalog } from "./catalog.ts";
import { registerHistory } from "./history.ts";
import { HISTORY_STREAM_PATHS, registerHistoryStream } from "./history-stream.ts";
import { opensStream } from "../../sse/stream-lease.ts";
import { registerInteractions } from "./interact.ts";
import { registerRunsList } from "./runs.ts";
import { registerStop } from "./stop.ts";
import { registerReset } from "./reset.ts";
import { registerTraceAttributes } from "./trace-attributes.ts";
import { registerTraceLog } from "./trace-log.ts";
import { registerStreamToken } from "./stream-token.ts";
import { registerInput, registerResult } from "./result.ts";
import { registerRun } from "./run.ts";
import { registerStart } from "./start.ts";
import { registerStatus } from "./status.ts";

/** Largest request body the Workflow API accepts (1 MiB). */
export const MAX_WORKFLOW_BODY_BYTES = 1024 * 1024;

/**
 * The Workflow API (`/workflow/...`), the Output API server's contract (docs/output-compatibility.md):
 * Bearer or Basic API keys, run-scoped `?token=` on stream routes, Output's error envelope.
 */
export function registerWorkflowApi(app: App) {
  app.use("/workflow/*", apiKeyOrStreamToken());
  // Before the rate limit: its call to the key's RateLimiter takes a stream's place too.
  for (const path of HISTORY_STREAM_PATHS) app.use(path, opensStream());
  app.use("/workflow/*", rateLimit());
  app.use("/workflow/*", requireKeyScope());
  app.use("/workflow/*", limitBody(MAX_WORKFLOW_BODY_BYTES));
  app.use("/workflow/*", refuseEncodedBody());
  app.use("/workflow/start", idempotencyKey());
  app.use("/workflow/run", idempotencyKey());
  // Fixed paths before /workflow/:id/... so that "catalog" and "runs" are never taken for ids.
  registerCatalog(app);
  registerRunsList(app);
  registerStart(app);
  registerRun(app);
  registerStatus(app);
  registerResult(app);
  registerHistoryStream(app);
  registerStreamToken(app);
  registerHistory(app);
  registerInteractions(app);
  registerStop(app);
  registerTraceLog(app);
  registerTraceAttributes(app);
  registerReset(app);
  // Output compatibility (issue 15, compat-api): run inputs; the pinned status/result/input/stop/
  // terminate, /feedback and /catalog/:id register with their unpinned forms above.
  registerInput(app);
  documentWorkflowApi(app);
}
