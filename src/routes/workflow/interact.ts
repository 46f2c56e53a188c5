/**
 * POST /workflow/:id/signal/:name, /query/:name, /update/:name: the request body (any JSON, or
 * none) is the handler's argument. Unknown handlers are 404 before anything reaches Temporal;
 * a handler's own failure (an update validator, a throwing query) is 422 with its message.
 */
import type { Context } from "hono";
import type { App, AppEnv } from "../../app-env.ts";
import { findWorkflowById } from "../../db/workflows.ts";
import { ApiError } from "../../errors.ts";
import { HostClient } from "../../host-client.ts";
import { getRunOrThrow } from "../../services/runs.ts";
import { isTerminal } from "../../shared/run-status.ts";
import { parseWorkflowIdParam } from "./params.ts";

const HANDLER_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const KIND_TO_LIST = { signal: "signals", query: "queries", update: "updates" } as const;

async function optionalJson(c: Context<AppEnv>): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError("invalid_json", `request body is not valid JSON: ${(err as Error).message}`);
  }
}

export function registerInteractions(app: App) {
  for (const kind of ["signal", "query", "update"] as const) {
    app.post(`/workflow/:id/${kind}/:name`, async (c) => {
      const workflowId = parseWorkflowIdParam(c.req.param("id"));
      const name = c.req.param("name");
      const run = await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId);
      const payload = await optionalJson(c);
      const workflow = await findWorkflowById(c.env.DB, run.workflowId);
      if (!HANDLER_NAME.test(name) || !workflow?.handlers[KIND_TO_LIST[kind]].includes(name)) {
        throw new ApiError("handler_not_found", `workflow ${run.workflowName} has no ${kind} handler named "${name}"`);
      }
      if (kind !== "query" && isTerminal(run.status)) {
        throw new ApiError("run_finished", `run ${workflowId} already ended (${run.status}); it takes no more ${kind}s`);
      }
      const result = await new HostClient(c.env).interact(workflowId, kind, name, payload);
      return c.json(kind === "signal" ? { workflowId, signal: name, delivered: true } : { workflowId, [kind]: name, result: result ?? null });
    });
  }
}
