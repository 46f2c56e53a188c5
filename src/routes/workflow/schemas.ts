import { z } from "zod";
import { decimalStringToNumber } from "../../shared/query-int.ts";
import { MAX_WORKFLOW_ID_LENGTH } from "../../shared/workflow-id.ts";

/** Longest `POST /workflow/run` will hold the connection before answering 408 (15 minutes). */
export const MAX_RUN_TIMEOUT_MS = 900_000;

/** Shortest `timeout` `POST /workflow/run` accepts, as Output's API server (ms). */
export const MIN_RUN_TIMEOUT_MS = 250;

/**
 * Outrider's one catalog. Output names a catalog by the task queue its catalog workflow runs on;
 * Outrider has one catalog per deployment (the code workflows the host publishes; an
 * organization's prompt workflows are not in it, they run by id through /api/v1/run), and this
 * is its id.
 */
export const CATALOG_ID = "outrider";

/** Path segments of fixed `/workflow/<x>` routes: never workflow ids, or they could not be addressed. */
const RESERVED_WORKFLOW_IDS = new Set(["catalog", "runs", "start", "run"]);

/**
 * A workflow id: any id Output or a caller mints (nanoid, `<name>-<uuid>`, `order:42`, ...), as
 * long as it is 1-256 characters of `A-Za-z0-9` and `._:@+=~-`, not only dots (`.`/`..` are
 * path segments URLs normalise away) and not one of the fixed route names.
 */
export const workflowIdSchema = z
  .string()
  .min(1)
  .max(MAX_WORKFLOW_ID_LENGTH)
  .regex(/^[A-Za-z0-9._:@+=~-]+$/, "a workflow id is made of A-Z, a-z, 0-9 and ._:@+=~-")
  .refine((id) => !/^\.+$/.test(id), "a workflow id cannot be only dots")
  .refine((id) => !RESERVED_WORKFLOW_IDS.has(id), "catalog, runs, start and run name routes, not workflow ids");

/** Kept for the OpenAPI document of path parameters. */
export const workflowIdParam = workflowIdSchema;

/** A pinned run id (`/workflow/:id/runs/:rid/...`): Temporal run ids are UUIDs, as Output requires. */
export const runIdParam = z.uuid();

/** A catalog id, as Output accepts them (Output: the catalog's task queue name). */
export const catalogIdSchema = z
  .string()
  .min(1)
  .max(128)
  // No /i flag: the OpenAPI document carries the pattern without flags (it read "...$/i", which nothing matches).
  .regex(/^[A-Za-z0-9_.@-]+$/, "a catalog id is made of letters, digits and _.@-");

/**
 * The longest workflow name a start takes. Catalog names have at most 64 characters; a longer one
 * is unknown, 424 as in Output (which caps no name), up to this bound. A start's default workflow
 * id, `<workflowName>-<uuid>`, stays within a workflow id's 256 characters.
 */
export const MAX_WORKFLOW_NAME_LENGTH = 200;

/** `searchAttributes` that ask for none: absent, null or `{}`. */
const noSearchAttributes = (value: unknown) =>
  value === undefined || value === null || (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0);

export const startWorkflowBody = z.object({
  workflowName: z.string().min(1).max(MAX_WORKFLOW_NAME_LENGTH),
  input: z.unknown().optional(),
  /** The run's workflow id; default `<workflowName>-<uuid>`. One id names one run, ever. */
  workflowId: workflowIdSchema.optional(),
  /** The catalog to run from; only `outrider` exists (CATALOG_ID). Wins over `taskQueue`. */
  catalog: catalogIdSchema.optional(),
  /** Output's deprecated alias of `catalog`. */
  taskQueue: catalogIdSchema.optional(),
  /**
   * Output's custom Temporal search attributes (its CLI's `--search-attributes`): not supported.
   * Every organization's runs share one Temporal namespace, where a tenant's attributes could set
   * and be read against another's; refused rather than dropped, so the caller knows none were set.
   */
  searchAttributes: z
    .unknown()
    .refine(noSearchAttributes, {
      error: "search attributes are not supported: Outrider does not index runs by custom Temporal search attributes; start without them",
    })
    .optional()
    .meta({ description: "Not supported: any attribute is 400 (null or {} ask for none and are accepted)" }),
});

export const runWorkflowBody = startWorkflowBody.extend({
  /**
   * Milliseconds to wait for the run to finish before answering 408. A string of decimal digits is
   * read as a number, as Output does; nothing else is coerced (Number() would read `[500]`, `"0x1f4"`,
   * `" 500"` and `true` as numbers).
   */
  timeout: z
    .preprocess(
      decimalStringToNumber,
      z.number({ error: "expected a whole number of milliseconds" }).int().min(MIN_RUN_TIMEOUT_MS).max(MAX_RUN_TIMEOUT_MS),
    )
    .optional(),
});
