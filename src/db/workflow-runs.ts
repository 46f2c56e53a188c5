/** Queries of the Workflow Runs API. Every one is scoped by organization and served by an index. */
import { and, asc, count, desc, eq, gt, inArray, isNotNull, isNull, or, sql, type SQL } from "drizzle-orm";
import { db } from "./client.ts";
import type { PageCursor } from "./page-cursor.ts";
import { type Run, runs, stepRuns, workflowFormerNames, workflows } from "./schema.ts";
import { foldForSearch, nameForms } from "../shared/names.ts";
import type { RunStatus } from "../shared/run-status.ts";

export interface RunListFilter {
  workflowId?: string;
  statuses?: RunStatus[];
  /** true: only runs blocked on input; false: only runs that are not. */
  waiting?: boolean;
  /** Substring of the workflow's name (case-insensitive). */
  search?: string;
}

/**
 * The workflows (global, and the organization's own) whose name, or a name they had before a
 * rename, holds `search`, as a subquery: a run shows its workflow's name when it ran, so it is
 * found under that name as well as under its workflow's current one. The runs query stays on the
 * (organization, workflow, created) index through `workflow_id IN (...)`, and binds one value
 * however many workflows match (a list of ids could pass D1's 100 bound parameters per statement).
 */
function workflowIdsMatching(organizationId: string, search: string): SQL {
  // instr, not LIKE: no wildcards to escape, and no pattern-length limit (D1's is small). A name is
  // compared by its fold (foldForSearch: NFC and Unicode lower case, stored with the name as
  // name_folded, since SQLite's lower() folds ASCII only) with the search's fold. A row not folded
  // yet (NULL: migration 0026) is compared as before it: lower(name), ASCII letters only, with each
  // of the search's spellings (nameForms: its NFC form, and the form sent when it differs, for names
  // stored before names were normalized).
  const folded = foldForSearch(search);
  const holds = (table: typeof workflows | typeof workflowFormerNames) =>
    sql`(instr(${table.nameFolded}, ${folded}) > 0 OR (${table.nameFolded} IS NULL AND (${sql.join(
      nameForms(search).map((form) => sql`instr(lower(${table.name}), lower(${form})) > 0`),
      sql` OR `,
    )})))`;
  const formerlyNamed = sql`(SELECT ${workflowFormerNames.workflowId} FROM ${workflowFormerNames} WHERE ${holds(workflowFormerNames)})`;
  return sql`(SELECT ${workflows.id} FROM ${workflows} WHERE (${workflows.organizationId} IS NULL OR ${workflows.organizationId} = ${organizationId}) AND (${holds(workflows)} OR ${workflows.id} IN ${formerlyNamed}))`;
}

/**
 * The most of a run's input (its JSON, in bytes) a list shows; a larger one is left out
 * (`inputOmitted`) and the run's detail has it. A body may carry 1 MiB of input, so a page of
 * 100 whole inputs could come to 100 MB; this keeps a page under about 7 MB.
 */
export const LISTED_INPUT_MAX_BYTES = 64 * 1024;

const inputBytes = sql`length(CAST(${runs.input} AS BLOB))`;

/** The columns of a run that the Workflow Runs list shows (workflowRunView). */
const LIST_COLUMNS = {
  id: runs.id,
  workflowId: runs.workflowId,
  workflowName: runs.workflowName,
  status: runs.status,
  waitingSince: runs.waitingSince,
  listedInput: sql<string | null>`CASE WHEN ${inputBytes} <= ${LISTED_INPUT_MAX_BYTES} THEN ${runs.input} END`,
  inputOmitted: sql<number>`${inputBytes} > ${LISTED_INPUT_MAX_BYTES}`,
  createdAt: runs.createdAt,
  updatedAt: runs.updatedAt,
};

export async function listWorkflowRuns(d1: D1Database, organizationId: string, filter: RunListFilter, page: number, limit: number) {
  const conditions: SQL[] = [eq(runs.organizationId, organizationId)];
  if (filter.workflowId) conditions.push(eq(runs.workflowId, filter.workflowId));
  if (filter.statuses) conditions.push(inArray(runs.status, filter.statuses));
  if (filter.waiting !== undefined) conditions.push(filter.waiting ? isNotNull(runs.waitingSince) : isNull(runs.waitingSince));
  if (filter.search !== undefined) conditions.push(inArray(runs.workflowId, workflowIdsMatching(organizationId, filter.search)));
  const where = and(...conditions);
  const [rows, [totalRow]] = await Promise.all([
    db(d1)
      // What the list shows of a run (workflowRunView), never its output or error details, which
      // with its input may hold a few MiB a row: a page of 100 read whole would not fit in 128 MB.
      .select(LIST_COLUMNS)
      .from(runs)
      .where(where)
      .orderBy(desc(runs.createdAt), desc(runs.id))
      .limit(limit)
      .offset((page - 1) * limit),
    db(d1).select({ n: count() }).from(runs).where(where),
  ]);
  return {
    rows: rows.map(({ listedInput, inputOmitted, ...row }) => ({
      ...row,
      input: listedInput === null ? null : (JSON.parse(listedInput) as unknown),
      inputOmitted: inputOmitted === 1,
    })),
    total: totalRow?.n ?? 0,
  };
}

export async function countRunsByStatus(d1: D1Database, organizationId: string, workflowId: string) {
  return db(d1)
    .select({ status: runs.status, waiting: sql<number>`${runs.waitingSince} IS NOT NULL`, n: count() })
    .from(runs)
    .where(and(eq(runs.organizationId, organizationId), eq(runs.workflowId, workflowId)))
    .groupBy(runs.status, sql`${runs.waitingSince} IS NOT NULL`);
}

/** What a cancel reads of a run: not its inputs and outputs (up to ~1 MiB each, a hundred runs at a time). */
const cancelTargetColumns = {
  id: runs.id,
  status: runs.status,
  temporalWorkflowId: runs.temporalWorkflowId,
  temporalRunId: runs.temporalRunId,
};
export type CancelTarget = { id: string; status: RunStatus; temporalWorkflowId: string; temporalRunId: string | null };

/** D1 binds at most 100 parameters per statement: ids go this many at a time, beside the organization's. */
const IDS_PER_STATEMENT = 90;

/** The organization's runs with these ids (lower-case UUIDs), in one statement per 90 ids; ids it has no run for are left out. */
export async function findCancelTargetsByIds(d1: D1Database, organizationId: string, ids: string[]): Promise<CancelTarget[]> {
  const chunks: string[][] = [];
  for (let i = 0; i < ids.length; i += IDS_PER_STATEMENT) chunks.push(ids.slice(i, i + IDS_PER_STATEMENT));
  const found = await Promise.all(
    chunks.map((chunk) =>
      db(d1)
        .select(cancelTargetColumns)
        .from(runs)
        .where(and(eq(runs.organizationId, organizationId), inArray(runs.id, chunk))),
    ),
  );
  return found.flat();
}

export async function findRunById(d1: D1Database, organizationId: string, id: string) {
  return (
    (
      await db(d1)
        .select()
        .from(runs)
        .where(and(eq(runs.organizationId, organizationId), eq(runs.id, id)))
        .limit(1)
    )[0] ?? null
  );
}

/** The Temporal workflow id of the organization's run with this UUID; works on a read-replica session too. */
export async function findWorkflowIdOfRun(d1: D1Database | D1DatabaseSession, organizationId: string, id: string) {
  const row = await d1
    .prepare("SELECT temporal_workflow_id AS workflowId FROM runs WHERE id = ? AND organization_id = ?")
    .bind(id, organizationId)
    .first<{ workflowId: string }>();
  return row?.workflowId ?? null;
}

/**
 * The run's step attempts, of every Temporal run it has had (a reset or a continue-as-new keeps the
 * earlier runs' attempts), oldest first; served by the step_runs unique index (run_id first).
 */
export async function listStepRuns(d1: D1Database, runId: string) {
  return db(d1)
    .select()
    .from(stepRuns)
    .where(eq(stepRuns.runId, runId))
    .orderBy(asc(stepRuns.createdAt), asc(stepRuns.stepId), asc(stepRuns.attempt));
}

/**
 * Open runs of the workflow whose current Temporal run has not been asked to cancel yet: a run
 * stays open in D1 until its cleanup ends it, and without this each cancel by workflow would take
 * the same runs again. (A reset's new run has another id, so it is asked again.)
 */
function openRunsNotAskedToCancel(organizationId: string, workflowId: string, statuses: RunStatus[]): SQL | undefined {
  return and(
    eq(runs.organizationId, organizationId),
    eq(runs.workflowId, workflowId),
    inArray(runs.status, statuses),
    sql`(${runs.cancelRequestedRunId} IS NULL OR ${runs.temporalRunId} IS NULL OR ${runs.cancelRequestedRunId} <> ${runs.temporalRunId})`,
  );
}

/**
 * The organization's runs of one workflow that have not ended and were not asked to cancel yet,
 * for cancel-by-workflow: runs Temporal has first (a run not started there yet can only be
 * `not_eligible`), oldest first.
 */
export async function listOpenRunsOfWorkflow(
  d1: D1Database,
  organizationId: string,
  workflowId: string,
  statuses: RunStatus[],
  limit: number,
): Promise<CancelTarget[]> {
  return db(d1)
    .select(cancelTargetColumns)
    .from(runs)
    .where(openRunsNotAskedToCancel(organizationId, workflowId, statuses))
    .orderBy(sql`${runs.temporalRunId} IS NULL`, asc(runs.createdAt), asc(runs.id))
    .limit(limit);
}

/** How many open runs of the workflow are left for another cancel by workflow. */
export async function countOpenRunsOfWorkflow(d1: D1Database, organizationId: string, workflowId: string, statuses: RunStatus[]) {
  const [row] = await db(d1)
    .select({ n: count() })
    .from(runs)
    .where(openRunsNotAskedToCancel(organizationId, workflowId, statuses));
  return row?.n ?? 0;
}

/** Notes that the cancellation of each run's current Temporal run was asked for (cancel-by-workflow skips it then). */
export async function markCancelRequested(d1: D1Database, organizationId: string, ids: string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += IDS_PER_STATEMENT) {
    await db(d1)
      .update(runs)
      .set({ cancelRequestedRunId: sql`${runs.temporalRunId}` })
      .where(and(eq(runs.organizationId, organizationId), inArray(runs.id, ids.slice(i, i + IDS_PER_STATEMENT))));
  }
}

/** Runs after `after` in oldest-first order ((created_at, id) ascending); no condition without a cursor. */
function newerThan(after: PageCursor | null): SQL | undefined {
  return after ? or(gt(runs.createdAt, after.createdAt), and(eq(runs.createdAt, after.createdAt), gt(runs.id, after.id))) : undefined;
}

/**
 * The organization's runs in `statuses` after `after`, oldest first, at most `limit`: the pages an
 * operator's terminate-runs works through (src/routes/admin/runs.ts). Keyset order, so runs
 * terminated by an earlier page are not taken again while their rows still wait for their ends.
 */
export async function listRunsOfOrganization(
  d1: D1Database,
  organizationId: string,
  statuses: RunStatus[],
  after: PageCursor | null,
  limit: number,
): Promise<Run[]> {
  return db(d1)
    .select()
    .from(runs)
    .where(and(eq(runs.organizationId, organizationId), inArray(runs.status, statuses), newerThan(after)))
    .orderBy(asc(runs.createdAt), asc(runs.id))
    .limit(limit);
}

/** How many of the organization's runs in `statuses` come after `after`. */
export async function countRunsOfOrganization(d1: D1Database, organizationId: string, statuses: RunStatus[], after: PageCursor | null) {
  const [row] = await db(d1)
    .select({ n: count() })
    .from(runs)
    .where(and(eq(runs.organizationId, organizationId), inArray(runs.status, statuses), newerThan(after)));
  return row?.n ?? 0;
}
