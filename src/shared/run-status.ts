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
