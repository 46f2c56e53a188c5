/**
 * POST /workflow/:id/signal/:name, /query/:name, /update/:name, and /feedback (signal `resume`):
 * Output's request body `{payload?: object}`, and `payload` is the handler's argument (none when
 * absent). Query and update answer with the handler's result as is; a signal answers
 * `{workflowId, signal, delivered}`. Unknown handlers are 404 before anything reaches Temporal;
 * a handler's own failure (an update validator, a throwing query) is 422 with its message.
 */
import { z } from "zod";
import type { Context } from "hono";
import type { App, AppEnv } from "../../app-env.ts";
import { findWorkflowById } from "../../db/workflows.ts";
import { ApiError } from "../../errors.ts";
import { HostClient } from "../../host-client.ts";
import { readJsonOrEmpty } from "../../middleware/json-body/index.ts";
import { assertRunOpen, getRunOrThrow } from "../../services/runs.ts";
import { parseWorkflowIdParam } from "./params.ts";

const HANDLER_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
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

async function interact(c: Context<AppEnv>, kind: Kind, name: string) {
  const workflowId = parseWorkflowIdParam(c.req.param("id") ?? "");
  const run = await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId);
  const { payload } = await readJsonOrEmpty(c, interactionBody);
  const workflow = await findWorkflowById(c.env.DB, run.workflowId);
  if (!HANDLER_NAME.test(name) || !workflow?.handlers[KIND_TO_LIST[kind]].includes(name)) {
    throw new ApiError("handler_not_found", `workflow ${run.workflowName} has no ${kind} handler named "${name}"`);
  }
  if (kind !== "query") assertRunOpen(run, `${kind}s`);
  const result = await new HostClient(c.env).interact(workflowId, kind, name, payload);
  return c.json(kind === "signal" ? { workflowId, signal: name, delivered: true } : (result ?? null));
}

export function registerInteractions(app: App) {
  for (const kind of ["signal", "query", "update"] as const) {
    app.post(`/workflow/:id/${kind}/:name`, (c) => interact(c, kind, c.req.param("name")));
  }
  app.post("/workflow/:id/feedback", (c) => interact(c, "signal", FEEDBACK_SIGNAL));
}
