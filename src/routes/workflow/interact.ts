/**
 * POST /workflow/:id/signal/:name, /query/:name, /update/:name, and /feedback (signal `resume`):
 * Output's request body `{payload?: object}`, and `payload` is the handler's argument (none when
 * absent). Query and update answer with the handler's result as is; a signal answers
 * `{workflowId, signal, delivered}`. Unknown handlers are 404 before anything reaches Temporal;
 * a handler's own failure (an update validator, a throwing query) is 422 with its message.
 */
import { z } from "zod";
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { App } from "../../app-env.ts";
import type { Workflow } from "../../db/schema.ts";
import { nearbyReads } from "../../db/client.ts";
import { findWorkflowById } from "../../db/workflows.ts";
import { ApiError, quotedId } from "../../errors.ts";
import { HostClient } from "../../host-client.ts";
import { parseBody, readJsonOrEmptyObject } from "../../middleware/json-body/index.ts";
import { type OwnedRunEnv, ownedRun } from "../../middleware/owned-run/index.ts";
import { assertRunOpen, getRunOrThrow, notStartedYet } from "../../services/runs.ts";
import { HANDLER_NAME_PATTERN } from "../../shared/host-api.ts";
import { isTerminal } from "../../shared/run-status.ts";

const KIND_TO_LIST = { signal: "signals", query: "queries", update: "updates" } as const;
type Kind = keyof typeof KIND_TO_LIST;

/**
 * Output's body for signals, queries, updates and feedback: an optional object `payload`. Other
 * keys are refused (Output ignores them), so a client that sends the argument unwrapped learns it
 * at once instead of its handler silently getting nothing.
 */
export const interactionBody = z.strictObject(
  { payload: z.looseObject({}).optional() },
  { error: 'send the handler\'s argument as {"payload": {...}}' },
);

/** The signal `POST /workflow/:id/feedback` sends, as Output. */
export const FEEDBACK_SIGNAL = "resume";

type InteractionEnv = OwnedRunEnv & { Variables: { interactionPayload: Record<string, unknown> | undefined } };

/**
 * The body, checked before the ownership read (ownedRun), so that a bad one is 400 whatever the
 * id names, as Output validates it first. The handler gets the payload as parsed, not zod's copy
 * of it: the copy drops a `__proto__` key (an own key after JSON.parse), and the handler would
 * never see it.
 */
const interactionRequest = createMiddleware<InteractionEnv>(async (c, next) => {
  const body = await readJsonOrEmptyObject(c);
  parseBody(interactionBody, body);
  c.set("interactionPayload", (body as { payload?: Record<string, unknown> }).payload);
  await next();
});

async function interact(c: Context<InteractionEnv>, kind: Kind, name: string) {
  const organizationId = c.get("auth").organizationId;
  // One call into the home region (the host's): the row (ownedRun) and the catalog are read near the Worker.
  // What a replica says is trusted only where it lets the call through (the host checks the run
  // is open and has the handler itself, with the same codes); a refusal is confirmed on the primary.
  const near = c.get("ownedRun");
  const { workflowId } = near;
  let run = near.run;
  const payload = c.get("interactionPayload");
  const hasHandler = (workflow: Workflow | null) =>
    HANDLER_NAME_PATTERN.test(name) && !!workflow?.handlers[KIND_TO_LIST[kind]].includes(name);
  let workflow = await findWorkflowById(nearbyReads(c.env.DB), run.workflowId);
  if (!hasHandler(workflow) && HANDLER_NAME_PATTERN.test(name)) workflow = await findWorkflowById(c.env.DB, run.workflowId);
  if (!hasHandler(workflow)) {
    throw new ApiError("handler_not_found", `workflow ${run.workflowName} has no ${kind} handler named ${quotedId(name)}`);
  }
  if (kind !== "query" && isTerminal(run.status) && !near.fresh) {
    // A replica may lag a reset that reopened the run: ask the primary before refusing.
    run = await getRunOrThrow(c.env, organizationId, workflowId);
  }
  if (kind !== "query") assertRunOpen(run, `${kind}s`);
  const result = await new HostClient(c.env).interact(workflowId, kind, name, payload).catch((err: unknown) => {
    throw notStartedYet(err, run);
  });
  return c.json(kind === "signal" ? { workflowId, signal: name, delivered: true } : (result ?? null));
}

export function registerInteractions(app: App) {
  for (const kind of ["signal", "query", "update"] as const) {
    app.post(`/workflow/:id/${kind}/:name`, interactionRequest, ownedRun(), (c) => interact(c, kind, c.req.param("name")));
  }
  app.post("/workflow/:id/feedback", interactionRequest, ownedRun(), (c) => interact(c, "signal", FEEDBACK_SIGNAL));
}
