/** Request schemas of the Workflow Runs API. */
import { z } from "zod";
import { PROMPT_WORKFLOW_ID } from "../../db/prompt-workflows.ts";
import { anyCaseUuid } from "../../shared/any-case-uuid.ts";
import { queryInt } from "../../shared/query-int.ts";
import { WORKFLOW_RUN_STATUSES } from "../../shared/run-status.ts";

/**
 * A workflow as this family's run views name it (`workflowId`): a catalog workflow's UUID, in any
 * letter case, or a prompt workflow's `wf_…` id (its runs are listed too). For the filter, the
 * dashboard and cancel; `execute` runs catalog workflows only.
 */
export const listedWorkflowId = z
  .string()
  .refine(
    (id) => anyCaseUuid.safeParse(id).success || PROMPT_WORKFLOW_ID.test(id),
    "expected a workflow's UUID, or a prompt workflow's wf_ id",
  )
  .transform((id) => (PROMPT_WORKFLOW_ID.test(id) ? id : id.toLowerCase()));

export const listQuery = z
  .object({
    workflowId: listedWorkflowId.optional(),
    status: z.enum(WORKFLOW_RUN_STATUSES).optional(),
    page: queryInt(1, 100_000).default(1),
    limit: queryInt(1, 100).default(10),
    // A substring of the name: an empty or blank one (an empty search box) is in every name, so no filter.
    search: z
      .string()
      .trim()
      .max(200)
      .transform((text) => text || undefined)
      .optional(),
  })
  .strict();

export const cancelBody = z
  .object({
    runIds: z.array(z.string().max(100)).min(1).max(100).optional(),
    workflowId: listedWorkflowId.optional(),
    reason: z.string().max(500).optional(),
  })
  .strict()
  .refine((b) => (b.runIds === undefined) !== (b.workflowId === undefined), "send exactly one of runIds and workflowId");

/** Environment override names: shell-style, so activities can read them like process variables. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export const executeFields = z
  .object({
    workflowId: anyCaseUuid,
    inputs: z.record(z.string(), z.unknown()).default({}),
    envs: z
      .record(z.string().regex(ENV_NAME, "names are letters, digits and _ (not starting with a digit)"), z.string().max(8192))
      .refine((e) => Object.keys(e).length <= 50, "at most 50 environment overrides")
      .default({}),
  })
  .strict();
