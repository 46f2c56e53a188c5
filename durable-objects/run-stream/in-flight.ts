/**
 * What a run has in flight, from its history: every activity, timer and child workflow it started
 * and that has not ended. The log keeps the count per run as events arrive (event-log.ts), so the
 * waiting check (waiting.ts) reads a number, not the run's whole history, after each workflow task.
 */
const t = (name: string) => `EVENT_TYPE_${name}`;

/** History event types that start something the run then waits on. */
const IN_FLIGHT_OPENS: readonly string[] = [
  t("ACTIVITY_TASK_SCHEDULED"),
  t("TIMER_STARTED"),
  t("START_CHILD_WORKFLOW_EXECUTION_INITIATED"),
];
/** History event types that end one of those. */
const IN_FLIGHT_CLOSES: readonly string[] = [
  t("ACTIVITY_TASK_COMPLETED"),
  t("ACTIVITY_TASK_FAILED"),
  t("ACTIVITY_TASK_TIMED_OUT"),
  t("ACTIVITY_TASK_CANCELED"),
  t("TIMER_FIRED"),
  t("TIMER_CANCELED"),
  t("START_CHILD_WORKFLOW_EXECUTION_FAILED"),
  t("CHILD_WORKFLOW_EXECUTION_COMPLETED"),
  t("CHILD_WORKFLOW_EXECUTION_FAILED"),
  t("CHILD_WORKFLOW_EXECUTION_CANCELED"),
  t("CHILD_WORKFLOW_EXECUTION_TIMED_OUT"),
  t("CHILD_WORKFLOW_EXECUTION_TERMINATED"),
];

const opens = new Set(IN_FLIGHT_OPENS);
const closes = new Set(IN_FLIGHT_CLOSES);

/** How a history event of this type moves the count: +1, -1 or 0. */
export function inFlightDelta(eventType: string | null | undefined): number {
  if (!eventType) return 0;
  return opens.has(eventType) ? 1 : closes.has(eventType) ? -1 : 0;
}

const list = (types: readonly string[]) => types.map((type) => `'${type}'`).join(", ");
/** The same delta in SQL, over the log's `history_type` column (for the count read once per wake). */
export const IN_FLIGHT_DELTA_SQL = `CASE WHEN history_type IN (${list(IN_FLIGHT_OPENS)}) THEN 1 WHEN history_type IN (${list(IN_FLIGHT_CLOSES)}) THEN -1 ELSE 0 END`;
