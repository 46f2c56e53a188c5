/** OpenAPI description of the Workflow API (`/workflow/...`), from the schemas its routes parse with. */
import { z } from "zod";
import type { App } from "../../app-env.ts";
import { anyObject, documentRoute } from "../../openapi/document.ts";
import { errorDetails } from "../../shared/error-details.ts";
import { RUN_STATUSES } from "../../shared/run-status.ts";
import { historyQuery } from "./history.ts";
import { HISTORY_STREAM_PATHS, historyStreamQuery } from "./history-stream.ts";
import { resetBody } from "./reset.ts";
import { interactionBody } from "./interact.ts";
import { recentRunsQuery } from "./runs.ts";
import { catalogIdSchema, runIdParam, runWorkflowBody, startWorkflowBody, workflowIdParam } from "./schemas.ts";
import { terminateBody } from "./stop.ts";

const tag = "Workflow API";
const idParam = z.object({ id: workflowIdParam });
const pinnedParams = z.object({ id: workflowIdParam, rid: runIdParam });
const status = z.enum(RUN_STATUSES);
// runId is null (status `scheduled`) when the run is accepted but Temporal has not confirmed it yet: it will run (docs/start-path.md).
const started = z.object({
  workflowId: z.string(),
  runId: z.string().nullable(),
  status,
  streamToken: z.string(),
  streamTokenExpiresAt: z.string(),
});
const traceInfo = z.object({ destinations: z.object({ local: z.string().nullable(), remote: z.string().nullable() }) }).meta({
  id: "TraceInfo",
  description: "Where the run's trace lives: `local` is always null, `remote` the R2 object (read it with GET /workflow/:id/trace-log)",
});
const result = z
  .object({
    workflowId: z.string(),
    runId: z.string().nullable(),
    status,
    input: z.unknown(),
    output: z.unknown(),
    trace: traceInfo.nullable(),
    attributes: z.array(anyObject),
    aggregations: anyObject,
    error: z.string().nullable(),
    errorDetails: errorDetails.nullable().meta({
      id: "ErrorDetails",
      description:
        "Output's structured failure, for a run that failed, was cancelled, terminated or timed out (null otherwise): the author's error message and name, whether Temporal would retry it, the failed step, and the cause chain outermost first",
    }),
  })
  .meta({ id: "RunResult" });
/** POST /workflow/run's answer: the result, Output's `completed`/`failed` status, and the run's own. */
const runAnswer = result
  .extend({
    runStatus: status.optional().meta({
      description: "The run's own status where `status` says only `completed` or `failed` (as Output's run does); absent on a 202",
    }),
    streamToken: z.string(),
    streamTokenExpiresAt: z.string(),
  })
  .meta({ id: "RunAnswer" });
const statusBody = z.object({
  workflowId: z.string(),
  runId: z.string().nullable(),
  status,
  startedAt: z.union([z.number(), z.literal("")]).meta({ description: "Epoch ms, or '' before the run has started" }),
  completedAt: z.union([z.number(), z.literal("")]).meta({ description: "Epoch ms, or '' while the run has not ended" }),
  workflowName: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
const runInfo = z.object({
  workflowId: z.string(),
  runId: z.string().nullable(),
  workflowType: z.string(),
  status,
  startedAt: z.string(),
  completedAt: z.string().nullable(),
  createdAt: z.string(),
});
const sse = { description: "Server-Sent Events (docs/streaming.md)", schema: z.string(), contentType: "text/event-stream" };
const RUN_ERRORS = ["run_not_found", "invalid_request"] as const;
const START_ERRORS = [
  "invalid_json",
  "invalid_request",
  "invalid_input",
  "unsupported_workflow",
  "catalog_not_found",
  "workflow_id_in_use",
  "insufficient_credits",
  "too_many_open_runs",
  "payload_too_large",
  "host_unavailable",
  "start_outcome_unknown",
  "host_error",
] as const;
const deprecatedNote = "Deprecated as in Output (Deprecation, Sunset and Link headers): use the run-pinned form.";
const traceAttributesBody = z.object({
  workflowId: z.string(),
  runId: z.string(),
  startTime: z.number().nullable().openapi({ description: "Epoch ms: the run's first history event" }),
  finishTime: z.number().nullable().openapi({ description: "Epoch ms: the run's last history event" }),
  runtime: z.number().nullable().openapi({ description: "finishTime - startTime, in ms" }),
  attributes: z.object({
    cost: z.object({
      total: z.number(),
      components: z
        .array(z.object({ name: z.enum(["cost:llm:request", "cost:http:request", "other"]), value: z.number() }))
        .openapi({ description: "Always these three, in this order" }),
    }),
    tokenUsage: z.object({ inputTokens: z.number(), outputTokens: z.number(), cachedInputTokens: z.number(), totalTokens: z.number() }),
  }),
  traceUrl: z
    .string()
    .openapi({ description: "The R2 object that holds the trace (`r2:traces/…`), as in a result's trace.destinations.remote" }),
});

const historyPage = z.object({
  workflow: z
    .object({
      workflowId: z.string().nullable(),
      runId: z
        .string()
        .nullable()
        .openapi({ description: "null while Temporal has not started the run (status `scheduled`), or never did" }),
      status,
      startTime: z.string().nullable(),
      closeTime: z.string().nullable(),
      historyLength: z.number(),
      taskQueue: z.string(),
      closed: z.boolean(),
    })
    .nullable(),
  events: z.array(anyObject),
  runId: z.string().nullable(),
  nextPageToken: z.string().nullable(),
});

export function documentWorkflowApi(app: App) {
  documentRoute(app, {
    method: "get",
    path: "/workflow/catalog",
    tag,
    auth: "apiKey",
    summary: "Workflows you can run, with their input and output JSON Schema",
    responses: { 200: { description: "The catalog", schema: z.object({ workflows: z.array(anyObject) }) } },
  });
  documentRoute(app, {
    method: "get",
    path: "/workflow/catalog/:id",
    tag,
    auth: "apiKey",
    summary: "The catalog `:id`: Outrider has one, `outrider`",
    params: z.object({ id: catalogIdSchema }),
    responses: { 200: { description: "The catalog", schema: z.object({ workflows: z.array(anyObject) }) } },
    errors: ["invalid_request", "catalog_not_found"],
  });
  documentRoute(app, {
    method: "get",
    path: "/workflow/runs",
    tag,
    auth: "apiKey",
    summary: "Recent runs, newest first (Output's shape)",
    query: recentRunsQuery,
    responses: { 200: { description: "Runs", schema: z.object({ runs: z.array(runInfo), count: z.number().int() }) } },
    errors: ["invalid_request"],
  });
  documentRoute(app, {
    method: "post",
    path: "/workflow/start",
    tag,
    auth: "apiKey",
    summary: "Start a run and return at once",
    body: startWorkflowBody,
    responses: { 200: { description: "Started", schema: started } },
    errors: [...START_ERRORS],
  });
  documentRoute(app, {
    method: "post",
    path: "/workflow/run",
    tag,
    auth: "apiKey",
    summary: "Start a run and wait for its result (408 when `timeout` runs out first)",
    body: runWorkflowBody,
    responses: {
      200: {
        description:
          "The run ended: `status` is `completed` or `failed` as in Output (a run cancelled, terminated or timed out is `failed`), and `runStatus` is the run's own status",
        schema: runAnswer,
      },
    },
    errors: [...START_ERRORS, "wait_timed_out"],
  });
  for (const pinned of [false, true]) {
    const base = pinned ? "/workflow/:id/runs/:rid" : "/workflow/:id";
    const params = pinned ? pinnedParams : idParam;
    const which = pinned ? "One run's" : "A run's";
    documentRoute(app, {
      method: "get",
      path: `${base}/status`,
      tag,
      auth: "apiKey",
      summary: `${which} current or final status`,
      params,
      responses: { 200: { description: "Status", schema: statusBody } },
      errors: [...RUN_ERRORS],
    });
    documentRoute(app, {
      method: "get",
      path: `${base}/result`,
      tag,
      auth: "apiKey",
      summary: `${which} result, once it has ended (424 before)`,
      params,
      responses: { 200: { description: "Result", schema: result } },
      errors: [...RUN_ERRORS, "run_not_finished"],
    });
    documentRoute(app, {
      method: "get",
      path: `${base}/input`,
      tag,
      auth: "apiKey",
      summary: `${which} input`,
      params,
      responses: {
        200: { description: "Input", schema: z.object({ workflowId: z.string(), runId: z.string().nullable(), input: z.unknown() }) },
      },
      errors: [...RUN_ERRORS],
    });
    documentRoute(app, {
      method: "patch",
      path: `${base}/stop`,
      tag,
      auth: "apiKey",
      summary: "Graceful stop (Temporal cancellation; cleanup runs)",
      params,
      description: pinned ? undefined : deprecatedNote,
      responses: {
        200: {
          description: "Cancelling",
          schema: z.object({ workflowId: z.string(), runId: z.string().nullable(), status: z.literal("cancelling") }),
        },
      },
      errors: [...RUN_ERRORS, "run_ended", "run_not_started", "host_unavailable"],
    });
    documentRoute(app, {
      method: "post",
      path: `${base}/terminate`,
      tag,
      auth: "apiKey",
      summary: "Immediate stop",
      params,
      body: terminateBody,
      bodyOptional: true,
      description: pinned ? undefined : deprecatedNote,
      responses: {
        200: {
          description: "Terminated",
          schema: z.object({
            terminated: z.literal(true),
            workflowId: z.string(),
            runId: z.string().nullable(),
            status: z.literal("terminated"),
            reason: z.string().nullable(),
          }),
        },
      },
      errors: [...RUN_ERRORS, "invalid_json", "run_ended", "run_not_started", "host_unavailable"],
    });
  }
  for (const path of HISTORY_STREAM_PATHS) {
    documentRoute(app, {
      method: "get",
      path,
      tag,
      auth: "apiKeyOrStreamToken",
      summary: "Follow a run's Temporal history live (workflow, history, done, server_error)",
      params: path.includes(":rid") ? pinnedParams : idParam,
      query: historyStreamQuery,
      responses: { 200: sse, 204: { description: "Past the end of a finished run" } },
      errors: [...RUN_ERRORS, "invalid_request", "too_many_subscribers", "too_many_streams", "host_unavailable"],
    });
  }
  documentRoute(app, {
    method: "post",
    path: "/workflow/:id/stream-token",
    tag,
    auth: "apiKey",
    summary: "Mint a run-scoped stream token",
    params: idParam,
    responses: { 200: { description: "Token", schema: z.object({ workflowId: z.string(), token: z.string(), expiresAt: z.string() }) } },
    errors: [...RUN_ERRORS],
  });
  for (const path of ["/workflow/:id/history", "/workflow/:id/runs/:rid/history"]) {
    documentRoute(app, {
      method: "get",
      path,
      tag,
      auth: "apiKey",
      summary: "A run's history as JSON, paged (Output's shape; long-poll with longPollTimeoutMs)",
      params: path.includes(":rid") ? pinnedParams : idParam,
      query: historyQuery,
      responses: { 200: { description: "A page of history", schema: historyPage } },
      errors: [...RUN_ERRORS, "invalid_request", "invalid_page_token"],
    });
  }
  for (const kind of ["signal", "query", "update"] as const) {
    documentRoute(app, {
      method: "post",
      path: `/workflow/:id/${kind}/:name`,
      tag,
      auth: "apiKey",
      summary: `Call the workflow's ${kind} handler with \`payload\``,
      params: z.object({ id: workflowIdParam, name: z.string() }),
      body: interactionBody,
      bodyOptional: true,
      responses: {
        200:
          kind === "signal"
            ? { description: "Delivered", schema: z.object({ workflowId: z.string(), signal: z.string(), delivered: z.literal(true) }) }
            : { description: "The handler's result, as is", schema: z.unknown() },
      },
      errors: [
        ...RUN_ERRORS,
        "invalid_json",
        "handler_not_found",
        "handler_failed",
        ...(kind === "query" ? [] : (["run_finished", "message_rejected"] as const)),
        ...(kind === "update" ? (["update_outcome_unknown"] as const) : []),
        ...(kind === "signal" ? (["signal_outcome_unknown"] as const) : []),
        ...(kind === "query" ? (["query_timed_out"] as const) : []),
        "run_not_started",
        "host_unavailable",
      ],
    });
  }
  documentRoute(app, {
    method: "post",
    path: "/workflow/:id/feedback",
    tag,
    auth: "apiKey",
    summary: "Send signal `resume` with `payload` (Output's feedback)",
    params: idParam,
    body: interactionBody,
    bodyOptional: true,
    responses: {
      200: {
        description: "Delivered",
        schema: z.object({ workflowId: z.string(), signal: z.literal("resume"), delivered: z.literal(true) }),
      },
    },
    errors: [
      ...RUN_ERRORS,
      "invalid_json",
      "handler_not_found",
      "run_finished",
      "message_rejected",
      "signal_outcome_unknown",
      "run_not_started",
      "host_unavailable",
    ],
  });
  for (const path of ["/workflow/:id/trace-log", "/workflow/:id/runs/:rid/trace-log"]) {
    documentRoute(app, {
      method: "get",
      path,
      tag,
      auth: "apiKey",
      summary: "The execution trace of a finished run, in Output's trace format",
      params: path.includes(":rid") ? pinnedParams : idParam,
      responses: { 200: { description: "Trace", schema: z.object({ source: z.literal("remote"), runId: z.string(), data: anyObject }) } },
      errors: [...RUN_ERRORS, "invalid_request", "run_not_finished", "trace_not_available"],
    });
  }
  for (const path of ["/workflow/:id/trace-attributes", "/workflow/:id/runs/:rid/trace-attributes"]) {
    documentRoute(app, {
      method: "get",
      path,
      tag,
      auth: "apiKey",
      summary: "A finished run's runtime, cost and token usage, summed over its trace (Output's shape)",
      params: path.includes(":rid") ? pinnedParams : idParam,
      responses: { 200: { description: "Trace attributes", schema: traceAttributesBody } },
      errors: [...RUN_ERRORS, "invalid_request", "run_not_finished", "trace_not_available"],
    });
  }
  for (const path of ["/workflow/:id/reset", "/workflow/:id/runs/:rid/reset"]) {
    documentRoute(app, {
      method: "post",
      path,
      tag,
      auth: "apiKey",
      summary: "Temporal reset to just after a completed step; answers the new run's id",
      params: path.includes(":rid") ? pinnedParams : idParam,
      body: resetBody,
      responses: { 200: { description: "The new run", schema: z.object({ workflowId: z.string(), runId: z.string() }) } },
      errors: [
        ...RUN_ERRORS,
        "invalid_json",
        "invalid_request",
        "step_not_found",
        "step_not_completed",
        "insufficient_credits",
        "too_many_open_runs",
        "run_not_started",
        "host_unavailable",
        "reset_outcome_unknown",
      ],
    });
  }
}
