/**
 * POST /workflow/:id/signal/:name, /query/:name, /update/:name: the request body (any JSON, or
 * none) is the handler's argument. Unknown handlers are 404 before anything reaches Temporal;
 * a handler's own failure (an update validator, a throwing query) is 422 with its message.
 */
import type { App } from "../../app-env.ts";
import { findWorkflowById } from "../../db/workflows.ts";
import { ApiError } from "../../errors.ts";
import { HostClient } from "../../host-client.ts";
import { readOptionalJson } from "../../middleware/json-body/index.ts";
import { assertRunOpen, getRunOrThrow } from "../../services/runs.ts";
import { parseWorkflowIdParam } from "./params.ts";

const HANDLER_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const KIND_TO_LIST = { signal: "signals", query: "queries", update: "updates" } as const;

export function registerInteractions(app: App) {
  for (const kind of ["signal", "query", "update"] as const) {
    app.post(`/workflow/:id/${kind}/:name`, async (c) => {
      const workflowId = parseWorkflowIdParam(c.req.param("id"));
      const name = c.req.param("name");
      const run = await getRunOrThrow(c.env, c.get("auth").organizationId, workflowId);
      const payload = await readOptionalJson(c);
      const workflow = await findWorkflowById(c.env.DB, run.workflowId);
      if (!HANDLER_NAME.test(name) || !workflow?.handlers[KIND_TO_LIST[kind]].includes(name)) {
        throw new ApiError("handler_not_found", `workflow ${run.workflowName} has no ${kind} handler named "${name}"`);
      }
      if (kind !== "query") assertRunOpen(run, `${kind}s`);
      const result = await new HostClient(c.env).interact(workflowId, kind, name, payload);
      return c.json(kind === "signal" ? { workflowId, signal: name, delivered: true } : { workflowId, [kind]: name, result: result ?? null });
    });
  }
}
