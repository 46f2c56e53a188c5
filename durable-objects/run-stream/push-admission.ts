/**
 * PushAdmission: does this DO keep the events the host pushes to it?
 *
 * The host relays the events of EVERY workflow execution on its task queue, including runs
 * started directly against Temporal (an operator's `temporal workflow start`, a benchmark's direct
 * phase). Naming a DO creates it; if it then kept those events, anything that can start a
 * workflow on the task queue could grow our storage without bound. So a push is kept only for a
 * run the edge knows:
 *
 * - the DO knows it itself (no D1 read): its storage holds a start (the `run_start` row its
 *   RunStarter writes when it accepts a run) or any log entry (a run it recorded before, possibly
 *   written by older code);
 * - otherwise ONE D1 primary read: is there a `runs` row for this workflow id? The answer is
 *   remembered for the rest of the wake (concurrent pushes share the one read), so a run's later
 *   pushes cost nothing extra. A yes is remembered by storage too: the events it admits go into
 *   the log. A no writes nothing: the push is answered as `dropped` (the host counts it and does
 *   not retry), logged once at WARN with the workflow id; a later wake of such a DO reads D1 once
 *   more (it kept nothing to remember it by, on purpose).
 *
 * Ordering cases:
 * (a) A start through the edge: the DO writes the `runs` row (acceptRunWithHold) and then its
 *     `run_start` row BEFORE it asks the host to start the workflow, so no push of that run can
 *     reach the DO before it knows the run: those runs never pay the D1 read.
 * (b) A reset, or any new Temporal run under the same workflow id (continue-as-new): the DO knows
 *     the workflow (start or log), and the row exists anyway: kept.
 * (c) A DO whose storage was wiped or lost (fault tests abort DOs; older storage) while the D1 row
 *     exists: the one D1 read finds the row: kept, and from then on its log remembers it.
 * (d) A run started directly in Temporal under a workflow id that also names a row (a caller may
 *     choose the workflow id of an edge start; edge-minted ids are `<name>-<uuid>`, so a clash
 *     needs someone to reuse one on purpose): the row exists, so the events are kept, as before
 *     this check existed. The push carries no organization to check against; Temporal refuses a
 *     second open execution under one workflow id, so only a reuse after the first run closed
 *     gets here.
 * (e) A push for an unknown id, then a start through the edge under that same id (a caller chose
 *     it): the start writes `run_start`, so the next push is kept without asking D1 again.
 *
 * The Worker's push route could ask D1 first and never name the DO, but that would be a D1 read
 * on every push of every run (issue 13 budgets statements per run); here only a DO that knows
 * nothing pays it, once. A DO that is named and writes nothing costs no storage: a fresh DO's
 * schema is only created when something is kept (storage.ts).
 */
import { runExistsForWorkflowId } from "../../src/db/runs.ts";

export interface PushAdmissionDeps {
  db: D1Database;
  /** Whether this DO's storage holds a start or any log entry (local SQLite only; false before its schema exists). */
  knowsRun(): boolean;
}

export class PushAdmission {
  /** true: keep pushes; false: D1 had no row (this wake); undefined: not decided yet. */
  private decided: boolean | undefined;
  private reading: Promise<boolean> | null = null;

  constructor(private readonly deps: PushAdmissionDeps) {}

  /** Whether to keep a push for `workflowId` (this DO's name). */
  async admits(workflowId: string): Promise<boolean> {
    if (this.decided) return true;
    // Checked again after a "no": a start through the edge may have come in since (case e).
    if (this.deps.knowsRun()) {
      this.decided = true;
      return true;
    }
    if (this.decided === false) return false;
    this.reading ??= this.readRow(workflowId).finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private async readRow(workflowId: string): Promise<boolean> {
    // A failed read throws: the push fails and the host retries it (nothing is remembered).
    const exists = await runExistsForWorkflowId(this.deps.db, workflowId);
    // A start through the edge may have been accepted while the read was out (case e).
    if (this.decided) return true;
    this.decided = exists;
    if (!exists) {
      console.warn(
        JSON.stringify({
          level: "warn",
          message: "run events dropped: no run was started through the edge under this workflow id (started directly in Temporal?)",
          workflowId,
        }),
      );
    }
    return exists;
  }
}
