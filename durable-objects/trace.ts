import type { SerializedHistoryEvent } from "../src/shared/history-events.ts";
import { stepNameOf } from "../src/shared/output-history.ts";

/**
 * The execution trace of a finished run, built from its history log when it ends, in Output's
 * trace format: one tree of nodes, the workflow at the root, a `step` node per activity under it,
 * and under each step one `llm` node per LLM call (its `llm:usage` attribute, where Output's CLI
 * `cost` command reads usage) and one `http` node per HTTP request the step recorded.
 *
 * Every node has `kind`, `name`, `phase` (`start` | `end` | `error`), `status`, `startedAt` and
 * `endedAt` (epoch ms, as Output's trace files have them), `input`, `output`, `error` and
 * `children`; `debug` prints that tree and `cost` sums the LLM nodes.
 */

export type TraceStatus =
  | "scheduled"
  | "running"
  | "completed"
  | "failed"
  | "timed_out"
  | "cancelled"
  | "terminated"
  | "continued_as_new"
  | string;

export interface TraceNode {
  id: string;
  kind: "workflow" | "step" | "llm" | "http" | string;
  name: string;
  phase: "start" | "end" | "error";
  status: TraceStatus;
  startedAt: number | null;
  endedAt: number | null;
  input?: unknown;
  output?: unknown;
  error?: { message: string } | null;
  attributes?: Record<string, unknown>;
  children: TraceNode[];
  [extra: string]: unknown;
}

const STEP_END: Record<string, TraceStatus> = {
  EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "completed",
  EVENT_TYPE_ACTIVITY_TASK_FAILED: "failed",
  EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "timed_out",
  EVENT_TYPE_ACTIVITY_TASK_CANCELED: "cancelled",
};

const ms = (iso: string | null | undefined): number | null => {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
};

const phaseOf = (status: TraceStatus): TraceNode["phase"] =>
  status === "completed" || status === "continued_as_new" ? "end" : status === "scheduled" || status === "running" ? "start" : "error";

/** A step's input as Output records it: its one argument (all of them when there are several). */
const firstArgument = (args: unknown[] | undefined): unknown => (args === undefined ? null : args.length === 1 ? args[0] : args);

/** One child node per attribute a step recorded: LLM usage (for `cost`), HTTP requests. */
function attributeNodes(stepId: string, attributes: readonly unknown[]): TraceNode[] {
  return attributes.map((raw, i) => {
    const attr = (raw ?? {}) as Record<string, unknown> & { type?: string };
    const id = `${stepId}:${i + 1}`;
    if (attr.type === "llm:usage") {
      return {
        id,
        kind: "llm",
        name: String(attr.modelId ?? "llm"),
        phase: "end",
        status: "completed",
        startedAt: null,
        endedAt: null,
        attributes: { "llm:usage": attr },
        children: [],
      };
    }
    if (attr.type === "http:request") {
      const url = String(attr.url ?? "");
      return {
        id,
        kind: "http",
        name: `${String(attr.method ?? "GET")} ${url}`,
        phase: "end",
        status: "completed",
        startedAt: null,
        endedAt: null,
        input: { method: attr.method ?? "GET", url },
        output: { status: attr.status ?? null },
        attributes: { "http:request:cost": { type: "http:request:cost", url, requestId: id, total: Number(attr.total ?? 0) } },
        children: [],
      };
    }
    return {
      id,
      kind: String(attr.type ?? "attribute"),
      name: String(attr.type ?? "attribute"),
      phase: "end",
      status: "completed",
      startedAt: null,
      endedAt: null,
      attributes: { [String(attr.type ?? "attribute")]: attr },
      children: [],
    };
  });
}

export function buildTrace(
  run: { workflowId: string; runId: string; status: string; output: unknown; error: string | null },
  events: SerializedHistoryEvent[],
  /** Attributes the steps published, by activity id. */
  attributesByActivity: ReadonlyMap<string, unknown[]> = new Map(),
): TraceNode {
  const steps = new Map<string, TraceNode>();
  let workflowName = "unknown";
  let input: unknown = null;
  for (const event of events) {
    const a = event.attributes;
    if (event.eventType === "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED") {
      workflowName = (a.workflowType as { name?: string } | undefined)?.name ?? workflowName;
      input = firstArgument(event.payloads?.input);
    } else if (event.eventType === "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED") {
      const activityId = (a.activityId as string | undefined) ?? event.eventId;
      const id = `${run.runId}:${event.eventId}`;
      steps.set(event.eventId, {
        id,
        kind: "step",
        name: stepNameOf((a.activityType as { name?: string } | undefined)?.name ?? "unknown"),
        activityId,
        phase: "start",
        status: "scheduled",
        startedAt: null,
        endedAt: null,
        attempts: 0,
        input: firstArgument(event.payloads?.input),
        output: null,
        error: null,
        children: attributeNodes(id, attributesByActivity.get(String(activityId)) ?? []),
      });
    } else if (event.eventType === "EVENT_TYPE_ACTIVITY_TASK_STARTED") {
      const step = steps.get(String(a.scheduledEventId));
      if (step) {
        step.status = "running";
        step.startedAt = ms(event.eventTime);
        step.attempts = Number(a.attempt ?? 1);
      }
    } else if (event.eventType in STEP_END) {
      const step = steps.get(String(a.scheduledEventId));
      if (step) {
        step.status = STEP_END[event.eventType]!;
        step.phase = phaseOf(step.status);
        step.endedAt = ms(event.eventTime);
        step.output = event.payloads?.result ?? null;
        const message = (a.failure as { message?: string } | undefined)?.message;
        step.error = message ? { message } : step.status === "completed" ? null : { message: step.status };
      }
    }
  }
  const startedAt = ms(events[0]?.eventTime);
  const endedAt = ms(events.at(-1)?.eventTime);
  return {
    id: `${run.workflowId}:${run.runId}`,
    kind: "workflow",
    name: workflowName,
    workflowId: run.workflowId,
    runId: run.runId,
    phase: phaseOf(run.status),
    status: run.status,
    startedAt,
    endedAt,
    duration: startedAt !== null && endedAt !== null ? endedAt - startedAt : null,
    input,
    output: run.output ?? null,
    error: run.error ? { message: run.error } : null,
    children: [...steps.values()],
  };
}

export const traceKey = (workflowId: string, runId: string) => `traces/${workflowId}/${runId}.json`;
