import { and, desc, eq, getTableColumns, inArray } from "drizzle-orm";
import { db } from "./client.ts";
import { type Run, runs } from "./schema.ts";

// The `scheduled` row is inserted together with its credit hold: acceptRunWithHold in ./credits.ts.

export async function findRunByWorkflowId(d1: D1Database, organizationId: string, temporalWorkflowId: string) {
  const rows = await db(d1)
    .select()
    .from(runs)
    .where(and(eq(runs.organizationId, organizationId), eq(runs.temporalWorkflowId, temporalWorkflowId)))
    .limit(1);
  return rows[0] ?? null;
}

/** Reads a run's whole row, by its workflow id, as a raw statement: for a batch that writes it first (runFromRow reads the answer). */
export function selectRunRowStatement(d1: D1Database, temporalWorkflowId: string): D1PreparedStatement {
  return d1.prepare("SELECT * FROM runs WHERE temporal_workflow_id = ?").bind(temporalWorkflowId);
}

/** A `runs` row as D1 returns it (column names, JSON as text) in the shape drizzle's reads give it. */
export function runFromRow(row: Record<string, unknown>): Run {
  const run: Record<string, unknown> = {};
  for (const [key, column] of Object.entries(getTableColumns(runs))) {
    const value = row[column.name];
    run[key] = value === null || value === undefined ? null : column.mapFromDriverValue(value);
  }
  return run as Run;
}

/**
 * The organization's most recent runs, newest first; those started under one workflow name (the
 * run's own `workflow_name`) when `workflowNames` is given: the spellings of that name
 * (`nameForms`, src/shared/names.ts), only one unless the caller sent a name not in NFC. Both
 * forms walk an index in order: runs_org_created_idx, and runs_org_workflow_name_created_idx for
 * one name.
 *
 * Only the columns a list shows: a row's input and output may hold up to about 1 MiB each, and
 * a page of 1,000 such rows read whole would not fit in the Worker's 128 MB.
 */
export async function listRecentRuns(d1: D1Database, organizationId: string, limit: number, filter: { workflowNames?: string[] } = {}) {
  const names = filter.workflowNames;
  const where =
    names !== undefined
      ? and(
          eq(runs.organizationId, organizationId),
          names.length === 1 ? eq(runs.workflowName, names[0]!) : inArray(runs.workflowName, names),
        )
      : eq(runs.organizationId, organizationId);
  return db(d1)
    .select({
      temporalWorkflowId: runs.temporalWorkflowId,
      temporalRunId: runs.temporalRunId,
      workflowName: runs.workflowName,
      status: runs.status,
      startedAt: runs.startedAt,
      completedAt: runs.completedAt,
      createdAt: runs.createdAt,
    })
    .from(runs)
    .where(where)
    .orderBy(desc(runs.createdAt), desc(runs.id))
    .limit(limit);
}

/**
 * Whether any organization has a run under this Temporal workflow id (the unique index answers):
 * a run's DO asks once before it keeps events for a run it does not know (push-admission.ts).
 */
export async function runExistsForWorkflowId(d1: D1Database, temporalWorkflowId: string): Promise<boolean> {
  return (await d1.prepare("SELECT 1 AS one FROM runs WHERE temporal_workflow_id = ? LIMIT 1").bind(temporalWorkflowId).first()) !== null;
}
