/** Request schemas of the Workflow Runs API. */
import { z } from "zod";
import { queryInt } from "../../shared/query-int.ts";
import { WORKFLOW_RUN_STATUSES } from "../../shared/run-status.ts";

/**
 * A workflow's or run's id: a UUID, in any letter case. Stored ids are lower case and D1 compares
 * them exactly, so an upper-case id would silently match nothing (an empty list, a cancel of
 * "not_found" runs that go on running).
 */
export const idOfAnyCase = z.uuid().transform((id) => id.toLowerCase());

export const listQuery = z
  .object({
    workflowId: idOfAnyCase.optional(),
    status: z.enum(WORKFLOW_RUN_STATUSES).optional(),
    page: queryInt(1, 100_000).default(1),
    limit: queryInt(1, 100).default(10),
    search: z.string().trim().min(1).max(200).optional(),
  })
  .strict();

export const cancelBody = z
  .object({
    runIds: z.array(z.string().max(100)).min(1).max(100).optional(),
    workflowId: idOfAnyCase.optional(),
    reason: z.string().max(500).optional(),
  })
  .strict()
  .refine((b) => (b.runIds === undefined) !== (b.workflowId === undefined), "send exactly one of runIds and workflowId");

/** Environment override names: shell-style, so activities can read them like process variables. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export const executeFields = z
  .object({
    workflowId: idOfAnyCase,
    inputs: z.record(z.string(), z.unknown()).default({}),
    envs: z
      .record(z.string().regex(ENV_NAME, "names are letters, digits and _ (not starting with a digit)"), z.string().max(8192))
      .refine((e) => Object.keys(e).length <= 50, "at most 50 environment overrides")
      .default({}),
  })
  .strict();
