/**
 * Temporal history events as the edge stores and streams them: Temporal's own JSON form (enum
 * names, int64 as strings), payload bytes removed, and activity and workflow inputs and results
 * decoded into `payloads` so a stream can include them on request (`?includePayloads=true`).
 * src/shared/output-history.ts turns this stored form into Output's JSON form on the way out.
 */
import { defaultPayloadConverter } from "@temporalio/common";
import proto from "@temporalio/proto"; // CommonJS: no named ESM exports at run time
import type { temporal } from "@temporalio/proto";
import type { SerializedHistoryEvent } from "../src/shared/history-events.ts";

const { HistoryEvent } = proto.temporal.api.history.v1;

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type Payloads = temporal.api.common.v1.IPayloads | null | undefined;

function decode(payloads: Payloads): unknown[] | undefined {
  if (!payloads?.payloads?.length) return undefined;
  return payloads.payloads.map((p) => {
    try {
      return defaultPayloadConverter.fromPayload(p as temporal.api.common.v1.Payload);
    } catch {
      // As Output does: name the encoding rather than fail the whole event.
      const encoding = p.metadata?.encoding ? new TextDecoder().decode(p.metadata.encoding) : "unknown";
      return { _raw: true, encoding };
    }
  });
}

/**
 * Left out of every stored event, at any depth: payload bytes (`payloads`: decoded into the event's
 * own `payloads` when they matter), headers, and the memo. The memo holds what the host keeps for
 * itself (a run's sealed env overrides, the start's accept id), not the tenant's: sealed values
 * sent back to the tenant who knows their plaintext would let it test guesses at the shared secret.
 */
const NOT_STORED: ReadonlySet<string> = new Set(["payloads", "header", "memo"]);

/** Drops payload bytes, headers and the memo (NOT_STORED). */
function stripPayloads(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripPayloads);
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (NOT_STORED.has(k)) continue;
      out[k] = stripPayloads(v);
    }
    return out;
  }
  return value;
}

export function serializeHistoryEvent(event: HistoryEvent): SerializedHistoryEvent {
  const json = HistoryEvent.toObject(event as temporal.api.history.v1.HistoryEvent, {
    enums: String,
    longs: String,
    bytes: String,
  }) as Record<string, unknown>;
  const attributesKey = Object.keys(json).find((k) => k.endsWith("EventAttributes"));
  const eventTime =
    event.eventTime?.seconds != null
      ? new Date(Number(event.eventTime.seconds) * 1000 + Math.floor((event.eventTime.nanos ?? 0) / 1e6)).toISOString()
      : null;
  const serialized: SerializedHistoryEvent = {
    eventId: String(json.eventId),
    eventTime,
    eventType: String(json.eventType),
    attributes: attributesKey ? (stripPayloads(json[attributesKey]) as Record<string, unknown>) : {},
  };
  const input = decode(event.activityTaskScheduledEventAttributes?.input ?? event.workflowExecutionStartedEventAttributes?.input);
  const result = decode(event.activityTaskCompletedEventAttributes?.result ?? event.workflowExecutionCompletedEventAttributes?.result);
  if (input !== undefined || result !== undefined) {
    serialized.payloads = {};
    if (input !== undefined) serialized.payloads.input = input;
    if (result !== undefined) serialized.payloads.result = result[0];
  }
  return serialized;
}
