/**
 * History events as Output's API server sends them (JSON history pages and SSE `history` frames),
 * translated from the form the host relays and the RunStream DO stores (`SerializedHistoryEvent`).
 *
 * Output's shape: `eventId` (string), `eventType` (Temporal's enum NUMBER), `eventTypeName` (the
 * enum name without `EVENT_TYPE_`), `eventTime` (ISO), and the attributes under Temporal's own
 * `<camelCase>EventAttributes` key, with `stepName` added to activity events. Payload fields are
 * dropped unless `includePayloads`, and then decoded in place as arrays.
 *
 * Where we differ on purpose (documented in docs/streaming.md): 64-bit numbers are strings
 * everywhere (Output mixes strings and `{low, high}` structs; its CLI reads both), and activity
 * names carry no `workflow#` prefix, so `stepName` equals `activityType.name`.
 */
import type { RunStatus } from "./run-status.ts";
import type { SerializedHistoryEvent } from "./history-events.ts";

/** temporal.api.enums.v1.EventType, by number (the part after `EVENT_TYPE_`). */
const EVENT_TYPE_NAMES = [
  "UNSPECIFIED",
  "WORKFLOW_EXECUTION_STARTED",
  "WORKFLOW_EXECUTION_COMPLETED",
  "WORKFLOW_EXECUTION_FAILED",
  "WORKFLOW_EXECUTION_TIMED_OUT",
  "WORKFLOW_TASK_SCHEDULED",
  "WORKFLOW_TASK_STARTED",
  "WORKFLOW_TASK_COMPLETED",
  "WORKFLOW_TASK_TIMED_OUT",
  "WORKFLOW_TASK_FAILED",
  "ACTIVITY_TASK_SCHEDULED",
  "ACTIVITY_TASK_STARTED",
  "ACTIVITY_TASK_COMPLETED",
  "ACTIVITY_TASK_FAILED",
  "ACTIVITY_TASK_TIMED_OUT",
  "ACTIVITY_TASK_CANCEL_REQUESTED",
  "ACTIVITY_TASK_CANCELED",
  "TIMER_STARTED",
  "TIMER_FIRED",
  "TIMER_CANCELED",
  "WORKFLOW_EXECUTION_CANCEL_REQUESTED",
  "WORKFLOW_EXECUTION_CANCELED",
  "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
  "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_FAILED",
  "EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED",
  "MARKER_RECORDED",
  "WORKFLOW_EXECUTION_SIGNALED",
  "WORKFLOW_EXECUTION_TERMINATED",
  "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
  "START_CHILD_WORKFLOW_EXECUTION_INITIATED",
  "START_CHILD_WORKFLOW_EXECUTION_FAILED",
  "CHILD_WORKFLOW_EXECUTION_STARTED",
  "CHILD_WORKFLOW_EXECUTION_COMPLETED",
  "CHILD_WORKFLOW_EXECUTION_FAILED",
  "CHILD_WORKFLOW_EXECUTION_CANCELED",
  "CHILD_WORKFLOW_EXECUTION_TIMED_OUT",
  "CHILD_WORKFLOW_EXECUTION_TERMINATED",
  "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED",
  "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED",
  "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED",
  "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
  "WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
  "WORKFLOW_EXECUTION_UPDATE_REJECTED",
  "WORKFLOW_EXECUTION_UPDATE_COMPLETED",
  "WORKFLOW_PROPERTIES_MODIFIED_EXTERNALLY",
  "ACTIVITY_PROPERTIES_MODIFIED_EXTERNALLY",
  "WORKFLOW_PROPERTIES_MODIFIED",
  "WORKFLOW_EXECUTION_UPDATE_ADMITTED",
  "NEXUS_OPERATION_SCHEDULED",
  "NEXUS_OPERATION_STARTED",
  "NEXUS_OPERATION_COMPLETED",
  "NEXUS_OPERATION_FAILED",
  "NEXUS_OPERATION_CANCELED",
  "NEXUS_OPERATION_TIMED_OUT",
  "NEXUS_OPERATION_CANCEL_REQUESTED",
  "WORKFLOW_EXECUTION_OPTIONS_UPDATED",
  "NEXUS_OPERATION_CANCEL_REQUEST_COMPLETED",
  "NEXUS_OPERATION_CANCEL_REQUEST_FAILED",
  "WORKFLOW_EXECUTION_PAUSED",
  "WORKFLOW_EXECUTION_UNPAUSED",
  "WORKFLOW_EXECUTION_TIME_SKIPPING_TRANSITIONED",
] as const;

const EVENT_TYPE_NUMBERS: ReadonlyMap<string, number> = new Map(EVENT_TYPE_NAMES.map((name, i) => [name, i]));

/** A history event in Output's JSON form. */
export interface OutputHistoryEvent {
  eventId: string;
  eventType: number | null;
  eventTypeName: string;
  eventTime: string | null;
  [attributesKey: `${string}EventAttributes`]: Record<string, unknown>;
}

/** Fields Output removes from the attributes unless payloads are asked for. */
const PAYLOAD_BEARING = ["input", "result", "failure", "details", "lastCompletionResult", "lastFailure"] as const;

/** Where Output decodes payloads in place (as arrays), when asked for them. */
const DECODED: Record<string, "input" | "result"> = {
  WORKFLOW_EXECUTION_STARTED: "input",
  WORKFLOW_EXECUTION_COMPLETED: "result",
  ACTIVITY_TASK_SCHEDULED: "input",
  ACTIVITY_TASK_COMPLETED: "result",
};

/** `ACTIVITY_TASK_SCHEDULED` → `activityTaskScheduledEventAttributes` (Temporal's field names follow the enum). */
export function attributesKeyOf(eventTypeName: string): `${string}EventAttributes` {
  const camel = eventTypeName.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  return `${camel}EventAttributes`;
}

/** Output's `stepName`: the part of the activity name after the last `#` (ours have none). */
export function stepNameOf(activityName: string): string {
  return activityName.includes("#") ? activityName.slice(activityName.lastIndexOf("#") + 1) : activityName;
}

export function eventTypeNameOf(stored: Pick<SerializedHistoryEvent, "eventType">): string {
  return stored.eventType.replace(/^EVENT_TYPE_/, "");
}

export function toOutputEvent(stored: SerializedHistoryEvent, includePayloads: boolean): OutputHistoryEvent {
  const name = eventTypeNameOf(stored);
  const number = EVENT_TYPE_NUMBERS.get(name);
  const event = {
    eventId: stored.eventId,
    eventType: number ?? null,
    eventTypeName: number === undefined ? `UNKNOWN_${name}` : name,
    eventTime: stored.eventTime,
  } as OutputHistoryEvent;
  // An event type newer than this table: its attributes may carry payloads we do not know about.
  if (number === undefined && !includePayloads) return event;

  const attrs: Record<string, unknown> = { ...stored.attributes };
  // The host's own memo (sealed env overrides, accept id): never the tenant's to read. Events
  // stored before the host left it out (host/history-serialization.ts) still carry it.
  delete attrs.memo;
  const activityName = (attrs.activityType as { name?: unknown } | undefined)?.name;
  if (typeof activityName === "string" && activityName) attrs.stepName = stepNameOf(activityName);

  if (!includePayloads) {
    for (const field of PAYLOAD_BEARING) delete attrs[field];
  } else {
    const field = DECODED[name];
    if (field) {
      const decoded = field === "input" ? stored.payloads?.input : stored.payloads?.result;
      if (decoded === undefined) delete attrs[field];
      else attrs[field] = field === "input" ? decoded : [decoded];
    }
    if (name === "ACTIVITY_TASK_FAILED" && attrs.failure && typeof attrs.failure === "object") {
      const failure = attrs.failure as { message?: string; stackTrace?: string; applicationFailureInfo?: { type?: string } };
      attrs.failure = {
        message: failure.message ?? null,
        stackTrace: failure.stackTrace ?? null,
        type: failure.applicationFailureInfo?.type ?? null,
      };
    }
  }
  event[attributesKeyOf(name)] = attrs;
  return event;
}

/** SSE `done.reason` in Output's vocabulary: the closing event's type name. */
const DONE_REASONS: Partial<Record<RunStatus, string>> = {
  completed: "WORKFLOW_EXECUTION_COMPLETED",
  failed: "WORKFLOW_EXECUTION_FAILED",
  timed_out: "WORKFLOW_EXECUTION_TIMED_OUT",
  cancelled: "WORKFLOW_EXECUTION_CANCELED",
  terminated: "WORKFLOW_EXECUTION_TERMINATED",
  continued_as_new: "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
};

export function doneReason(status: RunStatus): string {
  return DONE_REASONS[status] ?? status;
}

// ---------------------------------------------------------------- page tokens

/** Output's accepted token syntax (standard base64, at most 4096 characters). */
export const PAGE_TOKEN_PATTERN = /^[A-Za-z0-9+/]+={0,2}$/;
const TOKEN_BODY = /^o1:([A-Za-z0-9-]{1,64}):(\d{1,15})$/;

export interface PageCursor {
  runId: string;
  afterEventId: number;
}

/** An opaque base64 page token naming the run and the last event id the client has. */
export function encodePageToken(cursor: PageCursor): string {
  return btoa(`o1:${cursor.runId}:${cursor.afterEventId}`);
}

/** The cursor in a token, or null when the token is not one of ours (Output: InvalidPageTokenError). */
export function decodePageToken(token: string): PageCursor | null {
  let text: string;
  try {
    text = atob(token);
  } catch {
    return null;
  }
  const match = TOKEN_BODY.exec(text);
  return match ? { runId: match[1]!, afterEventId: Number(match[2]) } : null;
}
