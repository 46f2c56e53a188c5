import { z } from "zod";
import type { App } from "../../app-env.ts";
import { documentRoute } from "../../openapi/document.ts";

/** The viewer's two routes in GET /openapi.json. */
export function documentViewer(app: App) {
  documentRoute(app, {
    method: "get",
    path: "/runs/:workflowId",
    tag: "Run viewer",
    auth: "none",
    summary: "Live run viewer (HTML page)",
    description:
      "A self-contained page that follows the run live over `GET /runs/{workflowId}/events`: status, steps with their attempts, thinking text, cost and tokens, output or error. Open it with `?token=<streamToken>`; the page itself needs no auth, its stream does.",
    query: z.object({ token: z.string().optional() }),
    responses: { 200: { description: "HTML page", schema: z.string(), contentType: "text/html" } },
  });
  documentRoute(app, {
    method: "get",
    path: "/runs/:workflowId/events",
    tag: "Run viewer",
    auth: "streamToken",
    summary: "The run viewer's Server-Sent Events",
    description:
      "The run's event log as SSE: `run`, `step`, `thinking`, `attribute` (SSE id: the log sequence number), then `done` (no id); `server_error` if the stream is lost. A run whose start was refused for good answers its `done` alone, with the id `0.end`. `Last-Event-ID` (or `?lastEventId=`: a log sequence number or `<n>.end`) resumes after that event; 204 once a finished run has nothing more, and for `0.end` on such a run.",
    query: z.object({ token: z.string(), lastEventId: z.string().optional() }),
    responses: {
      200: { description: "text/event-stream", schema: z.string(), contentType: "text/event-stream" },
      204: { description: "The run is over and the client has seen every event" },
    },
    errors: ["invalid_request", "run_not_found", "too_many_subscribers", "too_many_streams", "host_unavailable"],
  });
}
