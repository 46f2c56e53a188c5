/**
 * Run statuses as the API reports them. `scheduled` exists only at the edge (row written, start not
 * yet confirmed by Temporal); the rest mirror Temporal's execution statuses.
 */
export const RUN_STATUSES = [
  "scheduled",
  "running",
  "completed",
  "failed",
  "cancelled",
  "terminated",
  "timed_out",
  "continued_as_new",
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<RunStatus> = new Set([
  "completed",
  "failed",
  "cancelled",
  "terminated",
  "timed_out",
  "continued_as_new",
]);

export function isTerminal(status: RunStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

/** Ended without completing: what Output's results give an `error` and `errorDetails`. */
export const UNSUCCESSFUL_STATUSES: ReadonlySet<RunStatus> = new Set(["failed", "cancelled", "terminated", "timed_out"]);

/** Temporal's WorkflowExecutionStatusName (as @temporalio/client reports it) to ours. */
export function fromTemporalStatus(name: string): RunStatus {
  switch (name) {
    case "RUNNING":
      return "running";
    case "COMPLETED":
      return "completed";
    case "FAILED":
      return "failed";
    case "CANCELLED":
      return "cancelled";
    case "TERMINATED":
      return "terminated";
    case "TIMED_OUT":
      return "timed_out";
    case "CONTINUED_AS_NEW":
      return "continued_as_new";
    default:
      // UNSPECIFIED / UNKNOWN: Temporal has not told us anything final.
      return "running";
  }
}

/** Statuses of the Workflow Runs API (`/api/v1/workflow-runs`). */
export const WORKFLOW_RUN_STATUSES = ["scheduled", "running", "completed", "failed", "cancelled", "waiting"] as const;
export type WorkflowRunStatus = (typeof WORKFLOW_RUN_STATUSES)[number];

/**
 * Our statuses grouped under each Workflow Runs API status (for filters and counts). `waiting`
 * is a `running` run whose `waiting_since` is set (blocked on a signal or human input), and
 * `running` excludes those.
 */
export const STATUSES_BY_WORKFLOW_RUN_STATUS: Record<WorkflowRunStatus, RunStatus[]> = {
  scheduled: ["scheduled"],
  running: ["running", "continued_as_new"],
  completed: ["completed"],
  failed: ["failed", "timed_out"],
  cancelled: ["cancelled", "terminated"],
  waiting: ["running"],
};

export function toWorkflowRunStatus(status: RunStatus, waitingSince: string | null = null): WorkflowRunStatus {
  if (status === "running" && waitingSince) return "waiting";
  for (const [api, ours] of Object.entries(STATUSES_BY_WORKFLOW_RUN_STATUS)) if (ours.includes(status)) return api as WorkflowRunStatus;
  return "running";
}
