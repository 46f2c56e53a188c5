/** Prompt workflows: organization-owned rows of `workflows` with kind `prompt` and ids `wf_...`. */
import { and, desc, eq } from "drizzle-orm";
import { randomString } from "../shared/api-keys.ts";
import { foldForSearch } from "../shared/names.ts";
import { promptInputSchema } from "../shared/prompt-template.ts";
import { db } from "./client.ts";
import { type PageCursor, olderThan, pageOf } from "./page-cursor.ts";
import { workflows, type PromptDefinition, type Workflow } from "./schema.ts";
import { isUniqueViolation } from "./client.ts";

export const PROMPT_WORKFLOW_ID = /^wf_[a-z0-9]{6,40}$/;

export function newPromptWorkflowId(): string {
  return `wf_${randomString(12, "abcdefghijklmnopqrstuvwxyz0123456789")}`;
}

const PROMPT_OUTPUT_SCHEMA = {
  type: "object",
  properties: { text: { type: "string" }, citations: { type: "array", items: { type: "string" } } },
  required: ["text", "citations"],
};

export class NameTakenError extends Error {}

export async function insertPromptWorkflow(
  d1: D1Database,
  organizationId: string,
  fields: { name: string; description: string; prompt: PromptDefinition },
): Promise<Workflow> {
  try {
    const rows = await db(d1)
      .insert(workflows)
      .values({
        id: newPromptWorkflowId(),
        organizationId,
        name: fields.name,
        nameFolded: foldForSearch(fields.name),
        kind: "prompt",
        description: fields.description,
        inputSchema: promptInputSchema(fields.prompt.variables),
        outputSchema: PROMPT_OUTPUT_SCHEMA,
        published: false,
        prompt: fields.prompt,
      })
      .returning();
    return rows[0]!;
  } catch (err) {
    if (isUniqueViolation(err)) throw new NameTakenError(fields.name);
    throw err;
  }
}

/**
 * Applies `changes` to the workflow as it was read: null when another write changed it since
 * (its `updatedAt` moved on), so that the caller reads it again and recomputes its changes
 * (a `prompt` is rebuilt from the stored one, and two edits at once must not undo each other).
 * Each write moves `updatedAt` forward by at least 1 ms, so it names one version of the row.
 */
export async function updatePromptWorkflow(
  d1: D1Database,
  workflow: Workflow,
  changes: { name?: string; description?: string; prompt?: PromptDefinition; published?: boolean },
): Promise<Workflow | null> {
  try {
    const rows = await db(d1)
      .update(workflows)
      .set({
        ...changes,
        ...(changes.name === undefined ? {} : { nameFolded: foldForSearch(changes.name) }),
        ...(changes.prompt ? { inputSchema: promptInputSchema(changes.prompt.variables) } : {}),
        updatedAt: new Date(Math.max(Date.now(), Date.parse(workflow.updatedAt) + 1)).toISOString(),
      })
      .where(and(eq(workflows.id, workflow.id), eq(workflows.updatedAt, workflow.updatedAt)))
      .returning();
    return rows[0] ?? null;
  } catch (err) {
    if (isUniqueViolation(err)) throw new NameTakenError(changes.name ?? workflow.name);
    throw err;
  }
}

/** An organization's prompt workflow by id, published or not (admin view). */
export async function findPromptWorkflow(d1: D1Database, id: string) {
  if (!PROMPT_WORKFLOW_ID.test(id)) return null;
  return (
    (
      await db(d1)
        .select()
        .from(workflows)
        .where(and(eq(workflows.id, id), eq(workflows.kind, "prompt")))
        .limit(1)
    )[0] ?? null
  );
}

/** A published prompt workflow of this organization: the only kind /api/v1/run runs. */
export async function findPublishedPromptWorkflow(d1: D1Database, organizationId: string, id: string) {
  const row = await findPromptWorkflow(d1, id);
  return row && row.organizationId === organizationId && row.published && row.prompt ? row : null;
}

/** The organization's prompt workflows (unpublished ones too), newest first, `limit` at a time after `before`. */
export async function listPromptWorkflows(d1: D1Database, organizationId: string, limit: number, before: PageCursor | null) {
  const rows = await db(d1)
    .select()
    .from(workflows)
    .where(
      and(eq(workflows.organizationId, organizationId), eq(workflows.kind, "prompt"), olderThan(workflows.createdAt, workflows.id, before)),
    )
    .orderBy(desc(workflows.createdAt), desc(workflows.id))
    .limit(limit + 1);
  return pageOf(rows, limit);
}
