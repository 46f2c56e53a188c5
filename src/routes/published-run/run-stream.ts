import type { App } from "../../app-env.ts";
import { errorBody } from "../../errors.ts";
import { readJsonOrEmptyObject } from "../../middleware/json-body/index.ts";
import { neverStartedRunError, promptOutcome, promptRunMaxMs, promptStartCommand } from "../../services/prompt-runs.ts";
import { readRun } from "../../services/runs.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { positiveNumberVar } from "../../shared/positive-number-var.ts";
import { sseComment, sseFrame } from "../../sse/frames.ts";
import { logStreamResponse } from "../../sse/log-stream.ts";
import { REVOKED_KEY_MESSAGE } from "../../sse/run-subscription.ts";
import { startAndSubscribe } from "../../sse/start-subscription.ts";
import { DEFAULT_KEEPALIVE_INTERVAL_MS } from "../workflow/history-stream.ts";

/**
 * The model's call is a step Temporal retries (a provider error half-way through an answer): the
 * next attempt writes the whole answer again. So before the first text of a later attempt, once
 * an earlier one sent some, the stream says `restart` ({attempt}): drop the text and thinking so
 * far; what follows adds up to the result.
 */
function attemptRestarts() {
  let shown: number | undefined;
  return {
    /**
     * The `restart` frame to send before an entry of `attempt` ("" for none), or null to leave the
     * entry out: a late one of an attempt that a later one has replaced.
     */
    note(attempt: number | undefined): string | null {
      const now = attempt ?? 1;
      if (shown !== undefined && now < shown) return null;
      const restart = shown !== undefined && now > shown;
      shown = now;
      return restart ? sseFrame({ event: "restart", data: { attempt: now } }) : "";
    },
  };
}

/**
 * POST /api/v1/run/{workflow_id}/stream: the same run, as Server-Sent Events while the model
 * writes: `text` ({delta}) for each piece of the answer, `thinking` ({text}) for reasoning,
 * `restart` ({attempt}) when a retried model call starts over, then `result` (the body the
 * non-streaming route returns) or `error` (the shared error body).
 * Problems found before the run starts (auth, input, credits, limits) are ordinary JSON errors.
 */
export function registerPublishedRunStream(app: App) {
  app.post("/api/v1/run/:workflowId/stream", async (c) => {
    const organizationId = c.get("auth").organizationId;
    // No body is {}, as on the blocking route, but made so here: the command reaches the DO as JSON
    // in headers (startAndSubscribe), which drops an undefined body; the DO refused the command
    // without it, and that refusal read as a lost call (503 "try again", which could never succeed).
    const command = promptStartCommand(organizationId, c.req.param("workflowId"), await readJsonOrEmptyObject(c), c.get("idempotency"));
    // One call into the home region: the run's DO starts it and subscribes this stream to its log.
    const opened = await startAndSubscribe(c.env, command);
    const { started } = opened;
    if (started.runId === null) {
      c.header("x-run-id", started.workflowId);
      if (isTerminal(started.status)) {
        // An Idempotency-Key replay of a run that ended before Temporal ever had it: failed, as its end
        // says (read in its DO: a second call, on this path only).
        const { run } = await readRun(c.env, organizationId, started.workflowId, { settle: false });
        throw neverStartedRunError(run.status, run.error);
      }
      // Accepted, but the host has not confirmed the start yet: it will run; the caller follows it by id.
      return c.json({ workflowId: started.workflowId, status: started.status }, 202);
    }
    const prompt = started.prompt!;
    const runId = started.runId;
    const maxMs = promptRunMaxMs(c.env);
    const requestId = c.get("requestId");
    const restarts = attemptRestarts();
    const response = await logStreamResponse(c, {
      workflowId: started.workflowId,
      runId,
      afterSeq: 0,
      // An Idempotency-Key replay follows the earlier run in its own DO (a second call).
      ...(opened.kind === "subscribed" ? { openFirst: async () => ({ socket: opened.socket, runId }), startedByThisRequest: true } : {}),
      keepAliveMs: positiveNumberVar(c.env.SSE_KEEPALIVE_MS, DEFAULT_KEEPALIVE_INTERVAL_MS),
      keepAlive: () => sseComment("keep-alive"),
      onEntry: (entry) => {
        if (entry.type !== "text" && entry.type !== "thinking") return "";
        const before = restarts.note(entry.data.attempt);
        if (before === null) return "";
        return (
          before +
          (entry.type === "text"
            ? sseFrame({ event: "text", data: { delta: entry.data.delta } })
            : sseFrame({ event: "thinking", data: { text: entry.data.text } }))
        );
      },
      onDone: async (done) => {
        const outcome = promptOutcome(prompt, done.status, done.output, done.error, maxMs);
        return outcome.ok
          ? sseFrame({ event: "result", data: outcome.body })
          : sseFrame({ event: "error", data: errorBody(outcome.error.code, outcome.error.message, requestId) });
      },
      onLost: () => sseFrame({ event: "error", data: errorBody("host_unavailable", "lost the run's event stream", requestId) }),
      onRevoked: () => sseFrame({ event: "error", data: errorBody("unauthorized", REVOKED_KEY_MESSAGE, requestId) }),
    });
    // The run's id, as the blocking route gives it (rate-limit and request-id headers are added by their middleware).
    response.headers.set("x-run-id", started.workflowId);
    return response;
  });
}
