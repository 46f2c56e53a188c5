/** OpenAPI description of the Workflow API (`/workflow/...`), from the schemas its routes parse with. */
import { z } from "zod";
import type { App } from "../../app-env.ts";
import { anyObject, documentRoute } from "../../openapi/document.ts";
import { RUN_STATUSES } from "../../shared/run-status.ts";
import { historyQuery } from "./history.ts";
import { resetBody } from "./reset.ts";
import { recentRunsQuery } from "./runs.ts";
import { runWorkflowBody, startWorkflowBody, workflowIdParam } from "./schemas.ts";

const tag = "Workflow API";
const idParam = z.object({ id: workflowIdParam });
const status = z.enum(RUN_STATUSES);
// runId is null (status `scheduled`) when the run is accepted but Temporal has not confirmed it yet: it will run (docs/start-path.md).
const started = z.object({ workflowId: z.string(), runId: z.string().nullable(), status, streamToken: z.string(), streamTokenExpiresAt: z.string() });
const result = z
  .object({
    workflowId: z.string(),
    runId: z.string().nullable(),
    status,
    input: z.unknown(),
    output: z.unknown(),
    trace: z.unknown(),
    attributes: z.array(anyObject),
    aggregations: anyObject,
    error: z.string().nullable(),
  })
  .meta({ id: "RunResult" });
const sse = { description: "Server-Sent Events (docs/streaming.md)", schema: z.string(), contentType: "text/event-stream" };
const RUN_ERRORS = ["run_not_found"] as const;
const pinnedParams = z.object({ id: workflowIdParam, rid: z.uuid() });
const historyPage = z.object({
  workflow: z.object({ workflowId: z.string().nullable(), runId: z.string(), status, startTime: z.string().nullable(), closeTime: z.string().nullable(), historyLength: z.number(), taskQueue: z.string().nullable(), closed: z.boolean() }).nullable(),
  events: z.array(anyObject),
  runId: z.string().nullable(),
  nextPageToken: z.string().nullable(),
});

export function documentWorkflowApi(app: App) {
  documentRoute(app, {
    method: "get", path: "/workflow/catalog", tag, auth: "apiKey", summary: "Workflows you can run, with their input and output JSON Schema",
    responses: { 200: { description: "The catalog", schema: z.object({ workflows: z.array(anyObject) }) } },
  });
  documentRoute(app, {
    method: "get", path: "/workflow/runs", tag, auth: "apiKey", summary: "Recent runs, newest first", query: recentRunsQuery,
    responses: { 200: { description: "Runs", schema: z.object({ runs: z.array(anyObject) }) } }, errors: ["invalid_request"],
  });
  documentRoute(app, {
    method: "post", path: "/workflow/start", tag, auth: "apiKey", summary: "Start a run and return at once", body: startWorkflowBody,
    responses: { 200: { description: "Started", schema: started } },
    errors: ["invalid_json", "invalid_request", "invalid_input", "workflow_not_found", "insufficient_credits", "payload_too_large", "host_unavailable", "host_error"],
  });
  documentRoute(app, {
    method: "post", path: "/workflow/run", tag, auth: "apiKey", summary: "Start a run and wait for its result (202 when `timeout` runs out first)", body: runWorkflowBody,
    responses: { 200: { description: "The run ended", schema: result }, 202: { description: "Still running; poll the Location header", schema: result } },
    errors: ["invalid_json", "invalid_request", "invalid_input", "workflow_not_found", "insufficient_credits", "payload_too_large", "host_unavailable", "host_error"],
  });
  documentRoute(app, {
    method: "get", path: "/workflow/:id/status", tag, auth: "apiKey", summary: "A run's current or final status", params: idParam,
    responses: { 200: { description: "Status", schema: anyObject } }, errors: [...RUN_ERRORS],
  });
  documentRoute(app, {
    method: "get", path: "/workflow/:id/result", tag, auth: "apiKey", summary: "A run's result payload", params: idParam,
    responses: { 200: { description: "Result", schema: result } }, errors: [...RUN_ERRORS],
  });
  for (const path of ["/workflow/:id/history/stream", "/workflow/:id/runs/:rid/history/stream"]) {
    documentRoute(app, {
      method: "get", path, tag, auth: "apiKeyOrStreamToken", summary: "Follow a run's Temporal history live (workflow, history, done, server_error)",
      params: path.includes(":rid") ? pinnedParams : idParam,
      query: z.object({ lastEventId: z.string().optional(), includePayloads: z.enum(["true", "false"]).optional(), token: z.string().optional() }),
      responses: { 200: sse, 204: { description: "Past the end of a finished run" } }, errors: [...RUN_ERRORS, "invalid_request", "host_unavailable"],
    });
  }
  documentRoute(app, {
    method: "post", path: "/workflow/:id/stream-token", tag, auth: "apiKey", summary: "Mint a run-scoped stream token", params: idParam,
    responses: { 200: { description: "Token", schema: z.object({ workflowId: z.string(), token: z.string(), expiresAt: z.string() }) } }, errors: [...RUN_ERRORS],
  });
  for (const path of ["/workflow/:id/history", "/workflow/:id/runs/:rid/history"]) {
    documentRoute(app, {
      method: "get", path, tag, auth: "apiKey", summary: "A run's history as JSON, paged (Output's shape; long-poll with longPollTimeoutMs)",
      params: path.includes(":rid") ? pinnedParams : idParam, query: historyQuery,
      responses: { 200: { description: "A page of history", schema: historyPage } }, errors: [...RUN_ERRORS, "invalid_request", "invalid_page_token"],
    });
  }
  for (const kind of ["signal", "query", "update"] as const) {
    documentRoute(app, {
      method: "post", path: `/workflow/:id/${kind}/:name`, tag, auth: "apiKey", summary: `Call the workflow's ${kind} handler with the JSON body`,
      params: z.object({ id: workflowIdParam, name: z.string() }), body: z.unknown(),
      responses: { 200: { description: "Delivered / the handler's result", schema: anyObject } },
      errors: [...RUN_ERRORS, "invalid_json", "handler_not_found", "handler_failed", "run_finished", "host_unavailable"],
    });
  }
  documentRoute(app, {
    method: "patch", path: "/workflow/:id/stop", tag, auth: "apiKey", summary: "Graceful stop (Temporal cancellation; cleanup runs)", params: idParam,
    responses: { 202: { description: "Cancelling", schema: anyObject } }, errors: [...RUN_ERRORS, "run_finished", "host_unavailable"],
  });
  documentRoute(app, {
    method: "post", path: "/workflow/:id/terminate", tag, auth: "apiKey", summary: "Immediate stop", params: idParam,
    body: z.object({ reason: z.string().max(1000).optional() }),
    responses: { 200: { description: "Terminated", schema: anyObject } }, errors: [...RUN_ERRORS, "invalid_json", "invalid_request", "run_finished", "host_unavailable"],
  });
  for (const path of ["/workflow/:id/trace-log", "/workflow/:id/runs/:rid/trace-log"]) {
    documentRoute(app, {
      method: "get", path, tag, auth: "apiKey", summary: "The execution trace of a finished run, in Output's trace format", params: path.includes(":rid") ? pinnedParams : idParam,
      responses: { 200: { description: "Trace", schema: z.object({ source: z.literal("remote"), runId: z.string(), data: anyObject }) } },
      errors: [...RUN_ERRORS, "invalid_request", "run_not_finished", "trace_not_available"],
    });
  }
  for (const path of ["/workflow/:id/reset", "/workflow/:id/runs/:rid/reset"]) {
    documentRoute(app, {
      method: "post", path, tag, auth: "apiKey", summary: "Temporal reset to just after a completed step; answers the new run's id", params: path.includes(":rid") ? pinnedParams : idParam,
      body: resetBody,
      responses: { 200: { description: "The new run", schema: z.object({ workflowId: z.string(), runId: z.string() }) } },
      errors: [...RUN_ERRORS, "invalid_json", "invalid_request", "step_not_found", "step_not_completed", "host_unavailable"],
    });
  }
}
