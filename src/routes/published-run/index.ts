import type { App } from "../../app-env.ts";
import { documentPublishedRunApi } from "./openapi.ts";
import { refuseEncodedBody } from "../../middleware/body-encoding/index.ts";
import { limitBody } from "../../middleware/body-limit/index.ts";
import { apiKeyAuth } from "../../middleware/api-key-auth/index.ts";
import { rateLimit } from "../../middleware/rate-limit/index.ts";
import { requireKeyScope } from "../../middleware/key-scope/index.ts";
import { idempotencyKey } from "../../middleware/idempotency/index.ts";
import { registerPublishedRun } from "./run.ts";
import { registerPublishedRunStream } from "./run-stream.ts";

/** Largest request body a published run accepts (the template's variables), 1 MiB. */
const MAX_RUN_BODY_BYTES = 1024 * 1024;

/** The published run API (`/api/v1/run/...`): bearer API keys, rate limits, credits. */
export function registerPublishedRunApi(app: App) {
  app.use("/api/v1/run/*", apiKeyAuth());
  app.use("/api/v1/run/*", rateLimit());
  app.use("/api/v1/run/*", requireKeyScope());
  app.use("/api/v1/run/*", limitBody(MAX_RUN_BODY_BYTES));
  app.use("/api/v1/run/*", refuseEncodedBody());
  app.use("/api/v1/run/*", idempotencyKey());
  registerPublishedRunStream(app);
  registerPublishedRun(app);
  documentPublishedRunApi(app);
}
