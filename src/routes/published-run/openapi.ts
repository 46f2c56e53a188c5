/** OpenAPI description of the published run API (`/api/v1/run/...`). */
import { z } from "zod";
import type { App } from "../../app-env.ts";
import { documentRoute } from "../../openapi/document.ts";

const tag = "Published run API";
const params = z.object({ workflowId: z.string().describe("A prompt workflow id, e.g. wf_abc123") });
const variables = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).describe("Exactly the template's variables");
/**
 * The run is accepted but the host has not confirmed its start yet, so it will run; or its outcome
 * could not be waited for (docs/start-path.md): either way it has not ended.
 */
const accepted = {
  description:
    "Accepted, not ended: not started yet (`scheduled`), or running when its outcome could not be waited for; follow it by the x-run-id header (a Workflow API workflowId)",
  schema: z.object({ workflowId: z.string(), status: z.enum(["scheduled", "running"]) }),
};
const ERRORS = [
  "invalid_json",
  "invalid_input",
  "workflow_not_found",
  "insufficient_credits",
  "too_many_open_runs",
  "payload_too_large",
  "host_unavailable",
  "start_outcome_unknown",
] as const;

export function documentPublishedRunApi(app: App) {
  documentRoute(app, {
    method: "post",
    path: "/api/v1/run/:workflowId",
    tag,
    auth: "apiKey",
    summary: "Run a published prompt workflow and return its text",
    params,
    body: variables,
    bodyOptional: true,
    responses: {
      200: {
        description: "The generated text",
        schema: z.object({ success: z.literal(true), result: z.string(), citations: z.array(z.string()).optional() }),
      },
      202: accepted,
    },
    // host_error: the run completed, but its output is not a prompt's answer (promptOutcome).
    errors: [...ERRORS, "run_failed", "run_timed_out", "host_error"],
  });
  documentRoute(app, {
    method: "post",
    path: "/api/v1/run/:workflowId/stream",
    tag,
    auth: "apiKey",
    summary: "The same run as Server-Sent Events (thinking, text, restart, result, error)",
    params,
    body: variables,
    bodyOptional: true,
    responses: { 200: { description: "Server-Sent Events", schema: z.string(), contentType: "text/event-stream" }, 202: accepted },
    // run_failed: an Idempotency-Key replay of a run that ended before it ever started. too_many_streams:
    // a replay only (a stream whose run the request started is never refused for its key's count).
    errors: [...ERRORS, "run_failed", "too_many_streams"],
  });
}
