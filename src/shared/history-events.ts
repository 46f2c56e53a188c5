/** Temporal history event types that close a run (in Temporal's JSON enum names). */
export const CLOSE_EVENT_TYPES: readonly string[] = [
  "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
  "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED",
  "EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT",
  "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED",
  "EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED",
  "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
];

/**
 * A Temporal history event as the host relays it and the edge stores and streams it: Temporal's
 * JSON form (enum names, int64 as strings) without payload bytes, plus decoded activity payloads.
 */
export interface SerializedHistoryEvent {
  eventId: string;
  eventTime: string | null;
  eventType: string;
  attributes: Record<string, unknown>;
  /**
   * Decoded input (activity scheduled, workflow started) and result (activity or workflow
   * completed); clients get them only with includePayloads.
   */
  payloads?: { input?: unknown[]; result?: unknown };
}
