/**
 * GET /workflow/:id/history and GET /workflow/:id/runs/:rid/history: a run's Temporal history as
 * JSON pages, in the shape Output's API server answers (see docs/streaming.md#history-as-json).
 *
 * - `workflow` (the run's summary) comes with the first page and with every long-poll call.
 * - Without `longPollTimeoutMs`, `nextPageToken` is null at the current end of the history, even
 *   while the run goes on (clients that walk pages stop there).
 * - With it, the call waits (at most 15 s) for events past `pageToken`; on timeout it answers
 *   `events: []` and the same token.
 * - Tokens are opaque base64 and name their run, so a page walk stays on one run.
 */
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { z } from "zod";
import { queryInt } from "../../shared/query-int.ts";
import type { App, AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { zodIssues } from "../../middleware/json-body/index.ts";
import { type OwnedRunEnv, ownedRun } from "../../middleware/owned-run/index.ts";
import { runStream } from "../../run-stream-client.ts";
import { HISTORY_CATCH_UP_MS } from "../../../durable-objects/run-stream/trace-reader.ts";
import type { Run } from "../../db/schema.ts";
import { getRunOrThrow } from "../../services/runs.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { decodePageToken, encodePageToken, PAGE_TOKEN_PATTERN } from "../../shared/output-history.ts";
import { type PinnedRunEnv, parseWorkflowIdParam, pinnedRunParam } from "./params.ts";
import { anyCaseUuid } from "../../shared/any-case-uuid.ts";
import { singleValuedQuery } from "../../middleware/query/index.ts";

/** Output's cap on one long-poll; a larger `longPollTimeoutMs` waits this long. */
export const MAX_LONG_POLL_MS = 15_000;
/** How long a first page waits for the first events of a run that has just started. */
const FIRST_EVENTS_WAIT_MS = 2_000;
/** Output allows 50 a page; we allow more (a superset), with Output's default. */
export const MAX_HISTORY_PAGE_SIZE = 1000;

export const historyQuery = z.object({
  /** Any letter case names the same run (as a pinned `:rid`). */
  runId: anyCaseUuid.optional(),
  pageSize: queryInt(1, MAX_HISTORY_PAGE_SIZE).default(20),
  /** Opaque: pass back `nextPageToken`. An empty value counts as absent, as in Output. */
  pageToken: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z.string().max(4096).regex(PAGE_TOKEN_PATTERN, "invalid pageToken format").optional(),
  ),
  includePayloads: z.enum(["true", "false"]).optional(),
  /** Wait up to this long (ms, capped at 15 000) for events after `pageToken`. */
  longPollTimeoutMs: queryInt(1, 2_147_483_647).optional(),
  /** Some Output CLI versions ask for a long-poll with `wait=true` instead: the longest wait. */
  wait: z.enum(["true", "false"]).optional(),
});

type HistoryQueryEnv = AppEnv & { Variables: { historyQuery: z.infer<typeof historyQuery> } };

/** The id and the query, both 400 before the ownership read. */
const historyRequest = createMiddleware<HistoryQueryEnv>(async (c, next) => {
  parseWorkflowIdParam(c.req.param("id")!);
  const parsed = historyQuery.safeParse(singleValuedQuery(c));
  if (!parsed.success) throw new ApiError("invalid_request", "invalid history query", zodIssues(parsed.error));
  c.set("historyQuery", parsed.data);
  await next();
});

async function historyPage(c: Context<PinnedRunEnv & OwnedRunEnv & HistoryQueryEnv>): Promise<Response> {
  const pinnedRunId = c.get("pinnedRunId");
  const query = c.get("historyQuery");
  const organizationId = c.get("auth").organizationId;
  // Read near the Worker (ownedRun, docs/start-path.md): the only call into the home region is the DO's.
  const near = c.get("ownedRun");
  const { workflowId } = near;

  const cursor = query.pageToken === undefined ? null : decodePageToken(query.pageToken);
  if (query.pageToken !== undefined && !cursor) throw new ApiError("invalid_page_token", "this pageToken was not issued by this API");
  const askedRunId = pinnedRunId ?? query.runId;
  if (cursor && askedRunId && cursor.runId !== askedRunId) {
    throw new ApiError("invalid_page_token", "this pageToken belongs to another run of the workflow");
  }
  const includePayloads = query.includePayloads === "true";
  const after = cursor?.afterEventId ?? 0;
  const stub = runStream(c.env, workflowId);

  const longPollMs = query.longPollTimeoutMs ?? (query.wait === "true" ? MAX_LONG_POLL_MS : undefined);
  const longPoll = longPollMs !== undefined;
  // One call; the waits happen in the DO, next to the log, woken by its appends:
  // - without long-poll, a run whose outcome is known while its last events are still on their way
  //   (a client that saw the run end asks for its history at once, as Output's CLI does after `run`)
  //   is answered once they are there: a whole history, not a summary still saying running;
  // - a first page of a run that has just started waits a little for its first events (and a full
  //   summary), which the host relays within moments;
  // - a long-poll waits for events after its cursor, on the run the first look found (even if a
  //   reset or continue-as-new starts another).
  const page = await stub.historyPage(
    askedRunId ?? cursor?.runId,
    after,
    query.pageSize,
    includePayloads,
    longPoll
      ? { longPollMs: Math.min(longPollMs, MAX_LONG_POLL_MS) }
      : { catchUpMs: HISTORY_CATCH_UP_MS, firstEventsMs: FIRST_EVENTS_WAIT_MS },
  );
  if (askedRunId && !page.known) throw new ApiError("run_not_found", `workflow ${workflowId} has no run ${askedRunId}`);
  // A token whose run this workflow never had was issued for another workflow (or forged): the token is what is wrong.
  if (cursor && !page.known) throw new ApiError("invalid_page_token", "this pageToken belongs to no run of this workflow");

  // The DO knows no run yet (Temporal has not confirmed the start, or refused it for good): the
  // row says where the run stands, from the primary when a replica's copy may lag behind.
  const row = page.runId === null && !near.fresh ? await getRunOrThrow(c.env, organizationId, workflowId) : near.run;
  const runId = page.runId ?? row.temporalRunId;
  let nextPageToken: string | null = null;
  if (runId) {
    // Full: the page stopped at pageSize, or at its size in characters (HISTORY_PAGE_MAX_CHARS); more may follow.
    const { full } = page;
    if (!longPoll) {
      // At the current end: null, so a page walk stops (Temporal does the same without waitNewEvent).
      nextPageToken = full ? encodePageToken({ runId, afterEventId: page.lastEventId }) : null;
    } else if (page.events.length > 0) {
      nextPageToken = page.complete && !full ? null : encodePageToken({ runId, afterEventId: page.lastEventId });
    } else {
      // Timed out with nothing new: the same cursor again (none once the run's history is complete).
      nextPageToken = page.complete ? null : (query.pageToken ?? encodePageToken({ runId, afterEventId: after }));
    }
  }
  const firstPage = query.pageToken === undefined;
  return c.json({
    workflow: firstPage || longPoll ? (page.workflow ?? summaryOfRow(row)) : null,
    events: page.events,
    runId,
    nextPageToken,
  });
}

/**
 * The `workflow` summary of a run whose log has no run yet, from its row. Output's first page and
 * long-poll always carry one (its describe), and its CLI's `workflow monitor` ends only on this
 * summary's status: without it, a run refused before Temporal started it was polled for ever.
 */
function summaryOfRow(run: Run) {
  return {
    workflowId: run.temporalWorkflowId,
    runId: run.temporalRunId,
    status: run.status,
    startTime: run.startedAt,
    closeTime: isTerminal(run.status) ? run.completedAt : null,
    historyLength: 0,
    // Named by the run's first history event, which has not come (as the log's own summary before it).
    taskQueue: "",
    closed: isTerminal(run.status),
  };
}

export function registerHistory(app: App) {
  for (const path of ["/workflow/:id/history", "/workflow/:id/runs/:rid/history"]) {
    app.get(path, pinnedRunParam, historyRequest, ownedRun(), historyPage);
  }
}
