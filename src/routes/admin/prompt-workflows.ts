import type { App } from "../../app-env.ts";
import {
  NameTakenError,
  findPromptWorkflow,
  insertPromptWorkflow,
  listPromptWorkflows,
  updatePromptWorkflow,
} from "../../db/prompt-workflows.ts";
import type { PromptDefinition, Workflow } from "../../db/schema.ts";
import { ApiError, issueText, quotedId } from "../../errors.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { parseTemplate } from "../../shared/prompt-template.ts";
import { organizationOrThrow, pageQueryOrThrow } from "./organizations.ts";
import { createPromptWorkflowBody, promptWorkflowsQuery, updatePromptWorkflowBody } from "./schemas.ts";

export function promptWorkflowView(w: Workflow) {
  const prompt = w.prompt!;
  return {
    id: w.id,
    organizationId: w.organizationId,
    name: w.name,
    description: w.description,
    template: prompt.template,
    variables: prompt.variables,
    model: prompt.model,
    webSearch: prompt.webSearch,
    maxOutputTokens: prompt.maxOutputTokens,
    published: w.published,
    runUrl: `/api/v1/run/${w.id}`,
    createdAt: w.createdAt,
    updatedAt: w.updatedAt,
  };
}

/** Reads the template's variables; a malformed placeholder is a 400 naming it. */
function definition(fields: Omit<PromptDefinition, "variables">): PromptDefinition {
  const { variables, problems } = parseTemplate(fields.template);
  if (problems.length > 0) {
    // Each problem quotes its placeholder, which may be most of a 100 KB template, and there may be
    // thousands: the message lists the first few, clipped, as the issues do.
    const issues = problems.map((p) => ({ path: "template", message: p.message }));
    throw new ApiError("invalid_request", `template: ${issueText(issues, (i) => i.message)}`, issues);
  }
  return { ...fields, variables };
}

async function workflowOrThrow(env: Env, id: string): Promise<Workflow> {
  const workflow = await findPromptWorkflow(env.DB, id);
  if (!workflow) throw new ApiError("workflow_not_found", `no prompt workflow ${quotedId(id)}`);
  return workflow;
}

/** Concurrent edits a PATCH rebases onto before it gives up (each one another edit landed first). */
const MAX_EDIT_ATTEMPTS = 5;

/**
 * Reads the workflow, computes the changes from what it read, and writes them only if nobody
 * wrote in between; else reads again. Two edits at once (one of the model, one of the template)
 * both land, where writing the whole prompt as read would put the first one back.
 */
async function editWorkflow(
  env: Env,
  id: string,
  changesTo: (workflow: Workflow) => Parameters<typeof updatePromptWorkflow>[2],
): Promise<Workflow> {
  for (let attempt = 1; attempt <= MAX_EDIT_ATTEMPTS; attempt++) {
    const workflow = await workflowOrThrow(env, id);
    const updated = await updatePromptWorkflow(env.DB, workflow, changesTo(workflow)).catch(nameTaken);
    if (updated) return updated;
  }
  throw new ApiError("workflow_edit_conflict", `prompt workflow "${id}" is being edited by others; send the change again`);
}

function nameTaken(err: unknown): never {
  if (err instanceof NameTakenError)
    throw new ApiError("workflow_name_taken", `the organization already has a workflow named "${err.message}"`);
  throw err;
}

export function registerPromptWorkflows(app: App) {
  app.post("/admin/v1/organizations/:orgId/workflows", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const body = await readJson(c, createPromptWorkflowBody);
    const prompt = definition({
      template: body.template,
      model: body.model,
      webSearch: body.webSearch,
      maxOutputTokens: body.maxOutputTokens,
    });
    const workflow = await insertPromptWorkflow(c.env.DB, org.id, { name: body.name, description: body.description, prompt }).catch(
      nameTaken,
    );
    return c.json(promptWorkflowView(workflow), 201);
  });

  /** Newest first, a page at a time: `before` = the previous page's `next` (null on the last page). */
  app.get("/admin/v1/organizations/:orgId/workflows", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const { limit, before } = pageQueryOrThrow(c, promptWorkflowsQuery);
    const { page, next } = await listPromptWorkflows(c.env.DB, org.id, limit, before);
    return c.json({ workflows: page.map(promptWorkflowView), next });
  });

  app.get("/admin/v1/workflows/:workflowId", async (c) =>
    c.json(promptWorkflowView(await workflowOrThrow(c.env, c.req.param("workflowId")))),
  );

  app.patch("/admin/v1/workflows/:workflowId", async (c) => {
    const id = c.req.param("workflowId");
    await workflowOrThrow(c.env, id);
    const body = await readJson(c, updatePromptWorkflowBody);
    const promptChanged =
      body.template !== undefined || body.model !== undefined || body.webSearch !== undefined || body.maxOutputTokens !== undefined;
    const updated = await editWorkflow(c.env, id, (workflow) => {
      const current = workflow.prompt!;
      const prompt = promptChanged
        ? definition({
            template: body.template ?? current.template,
            model: body.model ?? current.model,
            webSearch: body.webSearch ?? current.webSearch,
            maxOutputTokens: body.maxOutputTokens ?? current.maxOutputTokens,
          })
        : undefined;
      return { name: body.name, description: body.description, prompt };
    });
    return c.json(promptWorkflowView(updated));
  });

  for (const [action, published] of [
    ["publish", true],
    ["unpublish", false],
  ] as const) {
    app.post(`/admin/v1/workflows/:workflowId/${action}`, async (c) =>
      c.json(promptWorkflowView(await editWorkflow(c.env, c.req.param("workflowId"), () => ({ published })))),
    );
  }
}
