/**
 * The ownership check of the `/workflow/:id/...` routes that then call the run's RunStream DO or
 * the host: the caller's organization must have a run with that workflow id, else 404
 * `run_not_found` (another organization's run is answered exactly like none). Naming a DO creates
 * it, and any tenant can name any id, so an unknown id must never reach one.
 *
 * The row is read near the Worker, through a D1 read-replica session, and from the primary only
 * when the replica has no row yet (`findRunNearby`, docs/start-path.md#ownership-checks-through-a-read-replica).
 * The run found (and whether the primary answered) is the typed `ownedRun` variable.
 *
 * Route-level, after authentication and after the route's own checks that answer 400 without a
 * read (a pinned `:rid`, the query, the body), so that those keep answering first:
 * `app.get("/workflow/:id/runs/:rid/history", checks, ownedRun(), handler)`.
 */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import type { Run } from "../../db/schema.ts";
import { parseWorkflowIdParam } from "../../routes/workflow/params.ts";
import { findRunNearby } from "../../services/runs.ts";

export interface OwnedRun {
  /** The route's `:id`, checked (a malformed id is 400 before the read). */
  workflowId: string;
  run: Run;
  /** The row came from the primary (the replica had none): its `status` and `temporalRunId` are current. */
  fresh: boolean;
}

/** Hono generics of a handler behind `ownedRun()`. */
export interface OwnedRunEnv extends AppEnv {
  Variables: AppEnv["Variables"] & { ownedRun: OwnedRun };
}

export const ownedRun = () =>
  createMiddleware<OwnedRunEnv>(async (c, next) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id") ?? "");
    const { run, fresh } = await findRunNearby(c.env, c.get("auth").organizationId, workflowId);
    c.set("ownedRun", { workflowId, run, fresh });
    await next();
  });
