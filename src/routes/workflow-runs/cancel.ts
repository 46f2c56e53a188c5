import type { App } from "../../app-env.ts";
import {
  type CancelTarget,
  countOpenRunsOfWorkflow,
  findCancelTargetsByIds,
  listOpenRunsOfWorkflow,
  markCancelRequested,
} from "../../db/workflow-runs.ts";
import { ApiError } from "../../errors.ts";
import { HostClient } from "../../host-client.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import type { RunStatus } from "../../shared/run-status.ts";
import { anyCaseUuid } from "../../shared/any-case-uuid.ts";
import { cancelBody } from "./schemas.ts";

type Outcome = "cancelled" | "already_completed" | "not_eligible" | "not_found" | "error";
const OPEN: RunStatus[] = ["scheduled", "running", "continued_as_new"];
const ENDED_ON_ITS_OWN: ReadonlySet<RunStatus> = new Set(["completed", "failed", "timed_out"]);
/**
 * Cancel-by-workflow acts on at most this many open runs per call, those not asked to cancel
 * before; `remaining` in the answer says how many are left for the next call.
 */
const MAX_RUNS_PER_CANCEL = 100;

async function cancelOne(host: HostClient, run: CancelTarget): Promise<{ status: Outcome; message?: string }> {
  if (ENDED_ON_ITS_OWN.has(run.status)) return { status: "already_completed" };
  if (run.status === "cancelled" || run.status === "terminated") return { status: "not_eligible", message: "already cancelled" };
  if (!run.temporalRunId) return { status: "not_eligible", message: "the run has no Temporal workflow yet" };
  try {
    await host.cancel(run.temporalWorkflowId);
    return { status: "cancelled" };
  } catch (err) {
    if (err instanceof ApiError && err.code === "run_finished") return { status: "already_completed" };
    return { status: "error", message: err instanceof Error ? err.message : String(err) };
  }
}

/** The runs `runIds` named (lower-cased id → as named), read a statement per 90 ids, not one per id. */
async function namedRuns(d1: D1Database, organizationId: string, named: Map<string, string>) {
  const ids = [...named.keys()].filter((id) => anyCaseUuid.safeParse(id).success);
  const found = new Map((await findCancelTargetsByIds(d1, organizationId, ids)).map((run) => [run.id, run]));
  return [...named].map(([id, runId]) => ({ runId, run: found.get(id) ?? null }));
}

/**
 * POST /api/v1/workflow-runs/cancel: `runIds` or `workflowId` (exactly one), optional `reason`.
 * One outcome per run; the request itself succeeds even when some runs could not be cancelled.
 */
export function registerCancel(app: App) {
  app.post("/api/v1/workflow-runs/cancel", async (c) => {
    const body = await readJson(c, cancelBody);
    const organizationId = c.get("auth").organizationId;
    const host = new HostClient(c.env);
    // One target per run, whatever the letter case it was named in; results echo the first spelling.
    const named = new Map<string, string>();
    for (const runId of body.runIds ?? []) if (!named.has(runId.toLowerCase())) named.set(runId.toLowerCase(), runId);
    const targets: Array<{ runId: string; run: CancelTarget | null }> = body.runIds
      ? await namedRuns(c.env.DB, organizationId, named)
      : (await listOpenRunsOfWorkflow(c.env.DB, organizationId, body.workflowId!, OPEN, MAX_RUNS_PER_CANCEL)).map((run) => ({
          runId: run.id,
          run,
        }));
    const results = await Promise.all(
      targets.map(async ({ runId, run }) => ({ runId, ...(run ? await cancelOne(host, run) : { status: "not_found" as const }) })),
    );
    // Runs asked to cancel are noted, so that the next cancel by workflow moves on to the others.
    const asked = results.filter((r) => r.status === "cancelled").map((r) => r.runId.toLowerCase());
    if (asked.length > 0) await markCancelRequested(c.env.DB, organizationId, asked);
    const summary = Object.fromEntries(
      (["cancelled", "already_completed", "not_eligible", "not_found", "error"] as const).map((s) => [
        s,
        results.filter((r) => r.status === s).length,
      ]),
    );
    // Cancel by workflow: the open runs a further call would take (ours, beside the contract's fields).
    const remaining = body.workflowId ? { remaining: await countOpenRunsOfWorkflow(c.env.DB, organizationId, body.workflowId, OPEN) } : {};
    return c.json({ reason: body.reason ?? null, results, summary, ...remaining });
  });
}
