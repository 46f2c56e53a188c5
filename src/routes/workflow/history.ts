import { z } from "zod";
import type { App } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { zodIssues } from "../../middleware/json-body/index.ts";
import { runStream } from "../../run-stream-client.ts";
import { getRunOrThrow } from "../../services/runs.ts";
import { parseWorkflowIdParam } from "./params.ts";

export const historyQuery = z.object({
  pageSize: z.coerce.number().int().min(1).max(1000).default(100),
  /** Opaque to clients: pass back `nextPageToken` (it is the last event id seen). */
  pageToken: z.string().regex(/^\d{1,15}$/).optional(),
  includePayloads: z.enum(["true", "false"]).optional(),
});

/** GET /workflow/:id/history: the run's history as JSON, a page at a time. */
export function registerHistory(app: App) {
  app.get("/workflow/:id/history", async (c) => {
    const workflowId = parseWorkflowIdParam(c.req.param("id"));
    const parsed = historyQuery.safeParse(c.req.query());
    if (!parsed.success) throw new ApiError("invalid_request", "invalid history query", zodIssues(parsed.error));
    await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId);
    const page = await runStream(c.env, workflowId).historyPage(
      undefined,
      Number(parsed.data.pageToken ?? 0),
      parsed.data.pageSize,
      parsed.data.includePayloads === "true",
    );
    return c.json({
      workflowId,
      runId: page.runId,
      events: page.events,
      complete: page.complete,
      nextPageToken: page.nextAfterEventId === null ? null : String(page.nextAfterEventId),
    });
  });
}
