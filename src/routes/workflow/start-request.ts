/**
 * What `POST /workflow/start` and `POST /workflow/run` share: the catalog check, the caller's
 * workflow id, Output's error for a workflow the catalog does not have, and the stream token.
 */
import type { Context } from "hono";
import type { AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { startRun, type StartedRun } from "../../services/runs.ts";
import type { StartChoices } from "../../services/start-command.ts";
import { mintingClaims, mintStreamToken } from "../../stream-tokens.ts";
import { CATALOG_ID } from "./schemas.ts";

export interface StartRequest {
  workflowName: string;
  input?: unknown;
  workflowId?: string;
  catalog?: string;
  taskQueue?: string;
}

/** `catalog` wins over `taskQueue` (Output's deprecated alias); a catalog other than Outrider's is 404. */
export function assertKnownCatalog(request: Pick<StartRequest, "catalog" | "taskQueue">): void {
  const catalog = request.catalog ?? request.taskQueue;
  if (catalog !== undefined && catalog !== CATALOG_ID) {
    throw new ApiError(
      "catalog_not_found",
      `no catalog "${catalog}": this deployment has one catalog, "${CATALOG_ID}" (GET /workflow/catalog)`,
    );
  }
}

/** Output answers a name its catalog does not have with 424 UnsupportedWorkflowError. */
export async function withOutputWorkflowErrors<T>(workflowName: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    if (err instanceof ApiError && err.code === "workflow_not_found") {
      throw new ApiError(
        "unsupported_workflow",
        `workflow "${workflowName}" is not in catalog "${CATALOG_ID}"; GET /workflow/catalog lists them`,
      );
    }
    throw err;
  }
}

/** The caller's choices a start carries into the home region: its workflow id and Idempotency-Key. */
export function startChoices(c: Context<AppEnv>, request: StartRequest): StartChoices {
  return { workflowId: request.workflowId, idempotency: c.get("idempotency") };
}

export async function startFromRequest(c: Context<AppEnv>, request: StartRequest) {
  assertKnownCatalog(request);
  const organizationId = c.get("auth").organizationId;
  const started: StartedRun = await withOutputWorkflowErrors(request.workflowName, () =>
    startRun(c.env, organizationId, request.workflowName, request.input ?? {}, startChoices(c, request)),
  );
  const stream = await mintStreamToken(c.env.STREAM_TOKEN_SECRET, mintingClaims(c.get("auth"), started.workflowId));
  return { started, streamToken: stream.token, streamTokenExpiresAt: stream.expiresAt };
}
