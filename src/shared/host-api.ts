/**
 * The typed contract of the hop between the edge Worker and the Node host. Both sides parse with
 * these schemas, so a change here is a compile error on the side that forgot it.
 */
import { z } from "zod";
import { errorDetails } from "./error-details.ts";
import { RUN_STATUSES } from "./run-status.ts";
import { fitsUtf8Bytes } from "./text-limits.ts";
import { MAX_WORKFLOW_ID_LENGTH } from "./workflow-id.ts";

export const HOST_PATHS = {
  start: "/v1/runs/start",
  describe: (workflowId: string) => `/v1/runs/${encodeURIComponent(workflowId)}`,
  result: (workflowId: string) => `/v1/runs/${encodeURIComponent(workflowId)}/result`,
  follow: (workflowId: string) => `/v1/runs/${encodeURIComponent(workflowId)}/follow`,
  interact: (workflowId: string, kind: "signal" | "query" | "update", name: string) =>
    `/v1/runs/${encodeURIComponent(workflowId)}/${kind}/${encodeURIComponent(name)}`,
  cancel: (workflowId: string) => `/v1/runs/${encodeURIComponent(workflowId)}/cancel`,
  terminate: (workflowId: string) => `/v1/runs/${encodeURIComponent(workflowId)}/terminate`,
  metrics: "/v1/metrics",
  reset: (workflowId: string) => `/v1/runs/${encodeURIComponent(workflowId)}/reset`,
  /** Readiness: the host answers once it has asked Temporal for its system info. */
  ready: "/v1/ready",
} as const;

export const EDGE_PATHS = {
  catalog: "/internal/catalog",
  runEvents: (workflowId: string) => `/internal/runs/${encodeURIComponent(workflowId)}/events`,
  /** Events of many runs in one signed push (what the host sends). */
  runEventsBatch: "/internal/run-events",
} as const;

export const startRunRequest = z.object({
  /** At most the edge's own limit: the host starts no run the edge could not name (past Temporal's own limit, a 500). */
  workflowId: z.string().min(1).max(MAX_WORKFLOW_ID_LENGTH),
  workflowName: z.string().min(1),
  input: z.unknown(),
  /** Temporal's workflow execution timeout: the run ends as timed_out after this long. */
  executionTimeoutMs: z.number().int().positive().optional(),
  /** Environment overrides for the run's activities; the host keeps them out of Temporal history in clear. */
  envs: z.record(z.string(), z.string()).optional(),
  /**
   * The run's UUID, kept in the workflow's memo. A start that carries one is idempotent: when the
   * workflow id already holds an execution with the same accept id (an earlier attempt whose answer
   * was lost), the host answers with that run instead of starting another (docs/start-path.md).
   */
  acceptId: z.string().min(1).max(64).optional(),
  /** A later attempt of the same start: the host looks for the earlier attempt's run first. */
  retry: z.boolean().optional(),
});
export type StartRunRequest = z.infer<typeof startRunRequest>;

export const startRunResponse = z.object({ workflowId: z.string(), runId: z.string() });
export type StartRunResponse = z.infer<typeof startRunResponse>;

const runStatus = z.enum(RUN_STATUSES);

export const describeRunResponse = z.object({
  workflowId: z.string(),
  runId: z.string(),
  workflowName: z.string(),
  status: runStatus,
  startTime: z.string().nullable(),
  closeTime: z.string().nullable(),
  historyLength: z.number(),
  taskQueue: z.string(),
});
export type DescribeRunResponse = z.infer<typeof describeRunResponse>;

/** A run's outcome as the host sees it; `status` is non-terminal when `wait` ran out first. */
export const runResultResponse = z.object({
  workflowId: z.string(),
  runId: z.string(),
  status: runStatus,
  output: z.unknown().nullable(),
  error: z.string().nullable(),
  /** Output's structured failure, for a run that did not complete (not for one still open). */
  errorDetails: errorDetails.nullable().optional(),
  closeTime: z.string().nullable(),
  /** Set when the run continued as new: the next run of the same workflow id. */
  newRunId: z.string().nullable().optional(),
});
export type RunResultResponse = z.infer<typeof runResultResponse>;

/**
 * A Temporal run id: a UUID. Checked before Temporal sees it, which answers any other string with
 * INVALID_ARGUMENT ("Invalid RunId."), the host's 500 before it was checked here.
 */
export const RUN_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const temporalRunId = z.string().regex(RUN_ID_PATTERN, "must be a Temporal run id (a UUID)");

export const interactRequest = z.object({ payload: z.unknown().optional() });
export const interactResponse = z.object({ result: z.unknown().optional() });
/**
 * A stop (Temporal cancellation) or terminate: of `runId` when the caller pinned one (Output's
 * pinned routes act on that run, and a run that has ended since is refused), else of the
 * workflow's current run.
 */
export const cancelRequest = z.object({ runId: temporalRunId.optional() });
export const terminateRequest = cancelRequest.extend({ reason: z.string().max(1000).optional() });
/** `runId`: the run the host acted on (the pinned one, or the one it found current); older hosts leave it out. */
export const stopResponse = z.object({ status: z.string(), runId: z.string().optional() });

/** Temporal reset to just after a completed step (of `runId`, or of the latest run). */
export const resetRequest = z.object({
  stepName: z.string().min(1).max(256),
  reason: z.string().max(1000).optional(),
  runId: temporalRunId.optional(),
});
export const resetResponse = z.object({ workflowId: z.string(), runId: z.string(), resetFromRunId: z.string() });

export const followResponse = z.object({ following: z.boolean() });

export const readyResponse = z.object({ ok: z.literal(true) });

export const hostErrorBody = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

export { runEvent, runEventBatch, runEventPush, runEventPushPartialFailure, runEventPushResult } from "./run-event-schema.ts";
export type { RunEvent, RunEventOf, RunEventType, RunEventPush, RunEventPushPartialFailure } from "./run-event-schema.ts";

/**
 * The most workflows one catalog publish holds. The edge writes it in one D1 batch of one statement
 * per workflow plus one, each counted against D1's 1,000 queries per Worker invocation (Workers
 * Paid; 50 on Free, where a catalog of at most 49 workflows fits).
 */
export const MAX_CATALOG_WORKFLOWS = 500;
/**
 * The most an input or output JSON Schema may take (UTF-8 bytes of its JSON). A workflow's row
 * holds both, its description and handlers, under D1's 2,000,000 bytes a row (which local D1 does
 * not enforce), and every start checks its input against the input schema.
 */
export const MAX_CATALOG_SCHEMA_BYTES = 256 * 1024;
export const MAX_CATALOG_DESCRIPTION_CHARS = 4096;
/** The most signal, query or update handlers (each kind) a workflow lists. */
export const MAX_CATALOG_HANDLERS = 100;
/**
 * A handler name: what the interaction routes (`/workflow/:id/signal/:name`, ...) accept, so that
 * every handler the catalog lists can be called.
 */
export const HANDLER_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

const jsonSchemaObject = z
  .record(z.string(), z.unknown())
  .refine((schema) => fitsUtf8Bytes(JSON.stringify(schema), MAX_CATALOG_SCHEMA_BYTES), {
    error: `a JSON Schema in the catalog takes at most ${MAX_CATALOG_SCHEMA_BYTES} bytes of JSON`,
  });
const handlerNames = z
  .array(z.string().regex(HANDLER_NAME_PATTERN, "a handler name is a letter then up to 63 letters, digits or _"))
  .max(MAX_CATALOG_HANDLERS);

export const catalogEntry = z.object({
  name: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/),
  description: z.string().max(MAX_CATALOG_DESCRIPTION_CHARS),
  inputSchema: jsonSchemaObject,
  outputSchema: jsonSchemaObject,
  handlers: z
    .object({ signals: handlerNames, queries: handlerNames, updates: handlerNames })
    .default({ signals: [], queries: [], updates: [] }),
});
export type CatalogEntry = z.infer<typeof catalogEntry>;
export const catalogPublish = z.object({
  workflows: z
    .array(catalogEntry)
    .max(MAX_CATALOG_WORKFLOWS)
    .superRefine((workflows, ctx) => {
      // A name listed twice would be written twice in the publish's batch, the second silently
      // replacing the first.
      const seen = new Set<string>();
      for (const [i, { name }] of workflows.entries()) {
        if (seen.has(name)) ctx.addIssue({ code: "custom", path: [i, "name"], message: `workflow "${name}" is listed more than once` });
        seen.add(name);
      }
    }),
});
/** The edge's answer to a catalog it took: how many workflows it published. */
export const catalogPublishResult = z.object({ published: z.number() });
