/** OpenAPI description of the Workflow Runs API (`/api/v1/workflow-runs/...`). */
import { z } from "zod";
import type { App } from "../../app-env.ts";
import { anyObject, documentRoute } from "../../openapi/document.ts";
import { PROMPT_WORKFLOW_ID } from "../../db/prompt-workflows.ts";
import { cancelBody, listQuery } from "./schemas.ts";

const tag = "Workflow Runs API";
const executeForm = z.object({
  workflowId: z.uuid(),
  inputs: z.string().optional().describe("JSON object of input values"),
  envs: z.string().optional().describe("JSON object of environment overrides (string to string)"),
});
const runParams = z.object({ runId: z.uuid() });
const EXECUTE_ERRORS = [
  "invalid_json",
  "invalid_encoding",
  "invalid_request",
  "invalid_input",
  "unsupported_media_type",
  "workflow_not_found",
  "insufficient_credits",
  "too_many_open_runs",
  "payload_too_large",
  "host_unavailable",
  "start_outcome_unknown",
] as const;
const sse = {
  description: "Server-Sent Events: ping, workflow-run, activity-run, thinking, result, error (docs/workflow-runs.md)",
  schema: z.string(),
  contentType: "text/event-stream",
};

export function documentWorkflowRunsApi(app: App) {
  documentRoute(app, {
    method: "post",
    path: "/api/v1/workflow-runs/execute",
    tag,
    auth: "jwtOrInternal",
    summary: "Execute a workflow and wait for it to end",
    body: executeForm,
    bodyType: "multipart/form-data",
    responses: {
      200: { description: "The run ended", schema: z.object({ success: z.boolean(), workflowRun: anyObject }) },
      202: { description: "Still running after 15 minutes", schema: anyObject },
    },
    errors: [...EXECUTE_ERRORS],
  });
  documentRoute(app, {
    method: "post",
    path: "/api/v1/workflow-runs/execute/stream",
    tag,
    auth: "jwtOrInternal",
    summary: "Execute a workflow, streaming its progress",
    body: executeForm,
    bodyType: "multipart/form-data",
    responses: {
      200: sse,
      202: {
        description:
          "Accepted, but Temporal has not confirmed the start yet (the host is down or slow): JSON `{ success: true, workflowRun }` with status `scheduled`, not a stream; follow it with GET /api/v1/workflow-runs/{runId}/stream",
        schema: z.object({ success: z.literal(true), workflowRun: anyObject }),
      },
    },
    // too_many_streams: an Idempotency-Key replay only (a stream whose run the request started is never refused for its key's count).
    errors: [...EXECUTE_ERRORS, "too_many_streams"],
  });
  documentRoute(app, {
    method: "get",
    path: "/api/v1/workflow-runs/:runId/stream",
    tag,
    auth: "jwtOrInternal",
    summary: "Follow (or resume, with Last-Event-ID) a run's event stream",
    params: runParams,
    query: z.object({ lastEventId: z.string().optional() }),
    responses: {
      200: sse,
      204: {
        description:
          "Nothing to stream: the run ended before it ever started in Temporal, or Last-Event-ID is the final event's (`<n>.end`) and nothing followed",
      },
    },
    errors: ["run_not_found", "invalid_request", "too_many_subscribers", "too_many_streams", "host_unavailable"],
  });
  documentRoute(app, {
    method: "post",
    path: "/api/v1/workflow-runs/cancel",
    tag,
    auth: "jwtOrInternal",
    summary: "Cancel runs by id or all open runs of a workflow",
    body: cancelBody,
    responses: {
      200: {
        description:
          "One outcome per run. By `workflowId`: at most 100 open runs not asked to cancel before, and `remaining`, the open runs left for another call",
        schema: z.object({
          reason: z.string().nullable(),
          results: z.array(anyObject),
          summary: anyObject,
          remaining: z.number().int().optional(),
        }),
      },
    },
    errors: ["invalid_json", "invalid_request"],
  });
  documentRoute(app, {
    method: "get",
    path: "/api/v1/workflow-runs",
    tag,
    auth: "jwtOrInternal",
    summary: "List runs with filters and pagination",
    query: listQuery,
    responses: { 200: { description: "A page of runs", schema: z.object({ data: z.array(anyObject), pagination: anyObject }) } },
    errors: ["invalid_request"],
  });
  documentRoute(app, {
    method: "get",
    path: "/api/v1/workflow-runs/dashboard/:workflowId",
    tag,
    auth: "jwtOrInternal",
    summary: "Counts of a workflow's runs by status",
    params: z.object({ workflowId: z.union([z.uuid(), z.string().regex(PROMPT_WORKFLOW_ID)]) }),
    responses: { 200: { description: "Counts", schema: z.object({ workflowId: z.string(), total: z.number(), counts: anyObject }) } },
    errors: ["workflow_not_found"],
  });
  documentRoute(app, {
    method: "get",
    path: "/api/v1/workflow-runs/:runId",
    tag,
    auth: "jwtOrInternal",
    summary: "A run with its activity runs (one per attempt)",
    params: runParams,
    responses: { 200: { description: "The run", schema: anyObject } },
    errors: ["run_not_found"],
  });
}
