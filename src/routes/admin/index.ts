import type { App } from "../../app-env.ts";
import { documentAdminApi } from "./openapi.ts";
import { refuseEncodedBody } from "../../middleware/body-encoding/index.ts";
import { limitBody } from "../../middleware/body-limit/index.ts";
import { adminAuth } from "../../middleware/admin-auth/index.ts";
import { registerApiKeys } from "./api-keys.ts";
import { registerCredits } from "./credits.ts";
import { registerOrganizations } from "./organizations.ts";
import { registerPromptWorkflows } from "./prompt-workflows.ts";
import { registerRuns } from "./runs.ts";
import { registerWebhooks } from "./webhooks.ts";

/**
 * Room for the largest body the admin schemas accept: a MAX_TEMPLATE_CHARS template is 300 KB of
 * UTF-8 when it is CJK, and 600 KB when the client writes every UTF-16 unit as `\uXXXX` (6 bytes,
 * as Python's json.dumps does by default); the other fields add a few KB. A body the schema would
 * take must not be refused as too large.
 */
const MAX_ADMIN_BODY_BYTES = 1024 * 1024;

/**
 * The admin API (`/admin/v1/...`), for operators and `npm run admin`: organizations, API keys,
 * credits, prompt workflows, webhooks, and terminating an organization's runs. Guarded by ADMIN_API_KEY, not by tenant keys.
 */
export function registerAdminApi(app: App) {
  app.use("/admin/*", adminAuth());
  app.use("/admin/*", limitBody(MAX_ADMIN_BODY_BYTES));
  app.use("/admin/*", refuseEncodedBody());
  registerOrganizations(app);
  registerApiKeys(app);
  registerCredits(app);
  registerPromptWorkflows(app);
  registerWebhooks(app);
  registerRuns(app);
  documentAdminApi(app);
}
