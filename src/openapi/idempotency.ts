/**
 * Documents `Idempotency-Key` on the start routes and the admin API's credit grant, after they
 * registered themselves: the request header, the `Idempotent-Replayed` response header and (for
 * the starts) the three error codes. Kept apart from each family's openapi.ts so the list of
 * these routes lives in one place.
 */
import { z } from "@hono/zod-openapi";
import type { App } from "../app-env.ts";
import { ERROR_CODES, isOutputFamilyPath, type ErrorCode } from "../errors.ts";
import { MAX_IDEMPOTENCY_KEY_LENGTH } from "../middleware/idempotency/index.ts";

/** OpenAPI paths of every route that starts a run. */
export const IDEMPOTENT_START_PATHS = [
  "/workflow/start",
  "/workflow/run",
  "/api/v1/run/{workflowId}",
  "/api/v1/run/{workflowId}/stream",
  "/api/v1/workflow-runs/execute",
  "/api/v1/workflow-runs/execute/stream",
] as const;

/** OpenAPI paths of the admin routes that take an Idempotency-Key (their errors are in their own docs). */
export const IDEMPOTENT_GRANT_PATHS = ["/admin/v1/organizations/{orgId}/credits"] as const;

const IDEMPOTENCY_ERRORS: ErrorCode[] = ["invalid_idempotency_key", "idempotency_key_in_use", "idempotency_key_reused"];

const keyHeader = (description: string) =>
  z.object({
    "idempotency-key": z
      .string()
      .min(1)
      .max(MAX_IDEMPOTENCY_KEY_LENGTH)
      .regex(/^([\x20\x21\x23-\x7e]+|"[\x20\x21\x23-\x7e]+")$/)
      .optional()
      .openapi({ description }),
  });

const headerSchema = keyHeader(
  "1-255 printable ASCII characters, unique per request (e.g. a UUID). The same key with the same request within 24 h returns the first request's run (`Idempotent-Replayed: true`); another request is 422 `idempotency_key_reused`; while the first is still starting, 409 `idempotency_key_in_use`. Scoped to the organization. docs/idempotency.md",
);
const grantHeaderSchema = keyHeader(
  "1-255 printable ASCII characters, unique per grant (e.g. a UUID). A retry with the same key, amount and note answers 200 with the same ledger entry (`Idempotent-Replayed: true`); the key with another amount or note is 422 `idempotency_key_reused`. Scoped to the organization; grant keys do not expire. docs/credits.md",
);

interface RouteDefinition {
  type: string;
  route?: {
    path: string;
    method: string;
    request?: { headers?: unknown };
    responses: Record<string, { description: string; headers?: Record<string, unknown>; content?: unknown }>;
  };
}

export function documentIdempotency(app: App): void {
  for (const definition of app.openAPIRegistry.definitions as RouteDefinition[]) {
    const route = definition.type === "route" ? definition.route : undefined;
    if (route?.method !== "post") continue;
    const start = (IDEMPOTENT_START_PATHS as readonly string[]).includes(route.path);
    if (!start && !(IDEMPOTENT_GRANT_PATHS as readonly string[]).includes(route.path)) continue;
    route.request = { ...(route.request ?? {}), headers: start ? headerSchema : grantHeaderSchema };
    for (const [status, response] of Object.entries(route.responses)) {
      if (Number(status) >= 200 && Number(status) < 300) {
        response.headers = {
          ...(response.headers ?? {}),
          "Idempotent-Replayed": {
            description: "`true` when this answer replays an earlier request with the same Idempotency-Key",
            schema: { type: "string", enum: ["true"] },
          },
        };
      }
    }
    // A grant's route lists its own (it has no run that may still be starting: no 409).
    for (const code of start ? IDEMPOTENCY_ERRORS : []) {
      const status = String(ERROR_CODES[code]);
      const existing = route.responses[status];
      if (existing?.content) {
        existing.description = existing.description.replace(/ \(docs\/errors\.md\)$/, `, \`${code}\` (docs/errors.md)`);
      } else {
        // The Workflow API answers errors in Output's envelope (src/errors.ts).
        const schema = isOutputFamilyPath(route.path) ? "OutputError" : "Error";
        route.responses[status] = {
          description: `Error: \`${code}\` (docs/errors.md)`,
          content: { "application/json": { schema: { $ref: `#/components/schemas/${schema}` } } },
        };
      }
    }
  }
}
