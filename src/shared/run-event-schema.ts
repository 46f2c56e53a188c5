/**
 * The run-event contract between the Node host and the edge: one zod discriminated union on
 * `type`, parsed by the edge's push route and built (typed) by the host. Each event type has its
 * own `data` shape, so a reader that checked `type` gets typed data without a cast.
 *
 * `sourceKey` makes redelivery idempotent: the same event from both sides, or twice from one, has
 * the same key and the run's log keeps it once.
 */
import { z } from "zod";
import { errorDetails } from "./error-details.ts";
import { isTerminal, RUN_STATUSES } from "./run-status.ts";
import { MAX_WORKFLOW_ID_LENGTH } from "./workflow-id.ts";

/**
 * A source key names the event's run, activity and attempt (e.g. the host's
 * `step:<runId>:<activityId>:<attempt>:<state>`), so it has room for the longest of each.
 */
const sourceKey = z.string().min(1).max(512);
const at = z
  .string()
  .min(1)
  .max(64)
  .refine((text) => !Number.isNaN(Date.parse(text)), "expected a time (ISO 8601)");
const runId = z.string().min(1).max(200);

/** A Temporal history event in the JSON form the host relays (see history-events.ts). */
export const serializedHistoryEventSchema = z.object({
  eventId: z.string().regex(/^\d{1,19}$/),
  eventTime: z.string().nullable(),
  eventType: z.string().min(1).max(120),
  attributes: z.record(z.string(), z.unknown()),
  payloads: z.object({ input: z.array(z.unknown()).optional(), result: z.unknown().optional() }).optional(),
});

/** Which activity attempt an event of a step belongs to. */
const stepContext = {
  runId,
  activityId: z.string().max(200).optional(),
  stepName: z.string().max(200).optional(),
  attempt: z.number().int().min(1).optional(),
};

/**
 * The largest cost or count an attribute may carry: far above any real one, and small enough that
 * a run's sums (its cost, tokens and requests in D1) stay finite however many attributes it has.
 */
export const MAX_ATTRIBUTE_NUMBER = 1e12;
const attributeAmount = z.number().min(0).max(MAX_ATTRIBUTE_NUMBER);
const attributeCount = z.number().int().min(0).max(MAX_ATTRIBUTE_NUMBER);

/** `llm:usage` (host/llm/pricing.ts): what a run's cost and token totals are summed from. */
const llmUsageAttribute = z.looseObject({
  type: z.literal("llm:usage"),
  modelId: z.string().min(1).max(200),
  total: attributeAmount,
  tokensUsed: attributeCount,
  usage: z
    .array(z.looseObject({ type: z.string().min(1).max(100), ppm: attributeAmount, amount: attributeCount, total: attributeAmount }))
    .max(100),
});
/** `http:request` (host/activities/http.ts): what a run's request count is summed from. */
const httpRequestAttribute = z.looseObject({
  type: z.literal("http:request"),
  method: z.string().min(1).max(100),
  url: z.string(),
  /** The URL that answered, when redirects led away from `url`. */
  finalUrl: z.string().optional(),
  status: z.number().int().nullable(),
  count: attributeCount,
  total: attributeAmount,
});
export type LlmUsageAttribute = z.infer<typeof llmUsageAttribute> & {
  /** Present when the price table has no entry for the model: it then costs 0. */
  unpriced?: true;
};
export type HttpAttribute = z.infer<typeof httpRequestAttribute>;
const KNOWN_ATTRIBUTES: Record<string, z.ZodType> = { "llm:usage": llmUsageAttribute, "http:request": httpRequestAttribute };

/**
 * An attribute a step recorded: a type, an optional cost, anything else. The kinds a run's totals
 * are summed from must have every field the sums read, so a partial one is refused with the push
 * (400, nothing recorded) rather than recorded and then failing the run's D1 projection on every
 * push after it.
 */
export const attributeSchema = z
  .looseObject({ type: z.string().min(1).max(100), total: attributeAmount.optional() })
  .superRefine((attribute, ctx) => {
    const known = KNOWN_ATTRIBUTES[attribute.type];
    const parsed = known?.safeParse(attribute);
    for (const issue of parsed?.error?.issues ?? []) ctx.addIssue({ code: "custom", message: issue.message, path: issue.path });
  });

/**
 * `resetFromRunId`: the run a Temporal reset started this one from (the row follows the new run).
 * `replacedRunId`: the workflow's current run when the reset took effect, when that was another
 * run (a reset pinned to an earlier run: Temporal terminates the current one if it is still
 * going). The run's DO names it as it logs the event (reset-mark.ts, `withReplacedRun`).
 */
export const runStartedData = z.object({ runId, resetFromRunId: runId.optional(), replacedRunId: runId.optional() });
export const runFinishedData = z.object({
  runId,
  /** A final status: a run that is still going has not finished (its source key would be spent). */
  status: z.enum(RUN_STATUSES).refine(isTerminal, "expected a final status"),
  output: z.unknown().optional(),
  error: z.string().nullable().optional(),
  /** Output's structured failure (src/shared/error-details.ts); absent from runs recorded before it was. */
  errorDetails: errorDetails.nullable().optional(),
  /** Set when the run continued as new: the next run of the same workflow id. */
  newRunId: z.string().nullable().optional(),
});
export const historyData = z.object({ runId, event: serializedHistoryEventSchema });
export const attributeData = z.object({ ...stepContext, attribute: attributeSchema });
export const thinkingData = z.object({ ...stepContext, text: z.string() });
export const textData = z.object({ ...stepContext, delta: z.string() });
export const stepData = z
  .object({
    ...stepContext,
    activityId: z.string().min(1).max(200),
    state: z.enum(["started", "completed", "failed"]),
    outputs: z.unknown().optional(),
    /**
     * A completed attempt's outputs were too large for its step event (past the host's
     * MAX_STEP_OUTPUT_BYTES, Temporal's payload limit) and left out: `outputs` is absent, and the
     * Workflow Runs API shows the attempt with `outputsOmitted`. `outputsSize`: their JSON's UTF-8 bytes.
     */
    outputsOmitted: z.literal(true).optional(),
    outputsSize: z.number().int().min(0).optional(),
    error: z.string().optional(),
  })
  .refine((d) => !(d.outputsOmitted && d.outputs !== undefined), {
    message: "a step event with outputsOmitted carries no outputs",
    path: ["outputs"],
  });

const event = <T extends string, D extends z.ZodType>(type: T, data: D) => z.object({ sourceKey, type: z.literal(type), at, data });

/** One entry of a run's event log. */
export const runEvent = z.discriminatedUnion("type", [
  event("run.started", runStartedData),
  event("run.finished", runFinishedData),
  event("history", historyData),
  event("attribute", attributeData),
  event("thinking", thinkingData),
  event("text", textData),
  event("step", stepData),
]);
export type RunEvent = z.infer<typeof runEvent>;
export type RunEventType = RunEvent["type"];
/** The event of one type, e.g. `RunEventOf<"step">`. */
export type RunEventOf<T extends RunEventType> = Extract<RunEvent, { type: T }>;
export type RunEventData<T extends RunEventType> = RunEventOf<T>["data"];
export const RUN_EVENT_TYPES = runEvent.options.map((o) => o.shape.type.value) as readonly RunEventType[];

/** The most events in one push (per run, and in all). */
export const MAX_EVENTS_PER_PUSH = 1000;
/** The most runs in one push. */
export const MAX_RUNS_PER_PUSH = 200;

/** A push for one run (the per-run route). */
export const runEventBatch = z.object({ events: z.array(runEvent).min(1).max(500) });

/**
 * A push across runs (the batch route): each run's events, in order. Events of one run are
 * applied in the order given; runs are independent of each other.
 */
export const runEventPush = z
  .object({
    runs: z
      .array(
        z.object({ workflowId: z.string().min(1).max(MAX_WORKFLOW_ID_LENGTH), events: z.array(runEvent).min(1).max(MAX_EVENTS_PER_PUSH) }),
      )
      .min(1)
      .max(MAX_RUNS_PER_PUSH),
  })
  .refine((p) => p.runs.reduce((n, r) => n + r.events.length, 0) <= MAX_EVENTS_PER_PUSH, {
    message: `at most ${MAX_EVENTS_PER_PUSH} events per push`,
    path: ["runs"],
  });
export type RunEventPush = z.infer<typeof runEventPush>;

/**
 * What the edge answers to a push across runs. `dropped`: runs whose events were not kept because
 * no run was started through the edge under their workflow id (started directly in Temporal);
 * they are done with, not to be retried.
 */
export const runEventPushResult = z.object({
  runs: z.number(),
  accepted: z.number(),
  duplicates: z.number(),
  dropped: z.number(),
});

/**
 * What the edge adds to its 503 when only some runs of a push could not be recorded: their
 * workflow ids. The other runs' events are recorded, so the host resolves those and retries only
 * these (a whole-push retry would also do: the recorded events come back as duplicates).
 */
export const runEventPushPartialFailure = z.object({ failedRuns: z.array(z.string()).min(1).max(MAX_RUNS_PER_PUSH) });
export type RunEventPushPartialFailure = z.infer<typeof runEventPushPartialFailure>;
