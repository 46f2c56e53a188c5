import { z } from "zod";

/** Longest `POST /workflow/run` will hold the connection before answering 202 (15 minutes). */
export const MAX_RUN_TIMEOUT_MS = 900_000;

export const startWorkflowBody = z.object({
  workflowName: z.string().min(1).max(64),
  input: z.unknown().optional(),
});

export const runWorkflowBody = startWorkflowBody.extend({
  /** Milliseconds to wait for the run to finish before answering 202 with the workflowId. */
  timeout: z.number().int().min(1).max(MAX_RUN_TIMEOUT_MS).optional(),
});

/** Temporal workflow ids minted by the edge: `<workflowName>-<uuid>`. */
export const workflowIdParam = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[a-z][a-z0-9_]{0,63}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
