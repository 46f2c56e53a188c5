/** The trace of each finished run, written once to R2 when the run's log is complete. */
import { buildTrace, traceKey } from "../trace.ts";
import { META_KEYS } from "./constants.ts";
import type { EventLog } from "./event-log.ts";
import type { Meta } from "./meta.ts";

export class TraceWriter {
  /** The log's entries this wake looked through for finished runs (their seq; null: none yet): the next look begins after it. */
  private lookedThrough: number | null = null;
  /** Where a wake's first look begins: every run that ended up to this entry has its trace (META_KEYS.tracesThrough; 0: the whole log). */
  private readonly markedThrough: number;
  /**
   * Runs looked at whose trace is not written yet: their log is not complete yet (the close event
   * is on its way, or Temporal no longer has the run), or R2 refused the trace. Every other run
   * looked at has its trace, so a push looks at these and at runs that finished since, not at
   * every run of a workflow that continued as new thousands of times.
   */
  private readonly unwritten = new Set<string>();

  constructor(
    private readonly bucket: R2Bucket,
    private readonly log: EventLog,
    private readonly meta: Meta,
  ) {
    this.markedThrough = Number(meta.get(META_KEYS.tracesThrough) ?? 0);
  }

  /** Does a complete run lack its trace (the watchdog keeps going until it is written)? */
  isMissing(runId: string): boolean {
    return this.log.isComplete(runId) && !this.meta.get(META_KEYS.trace(runId));
  }

  /**
   * Writes the trace of every complete run that has none yet. The first call of a wake looks at
   * the runs that ended after META_KEYS.tracesThrough (every run, in storage written before it:
   * one statement, which returns only those without a trace key); later calls only at runs that
   * ended since and those still without a trace. A failure leaves the run for the next call (the
   * alarm's, if no push comes).
   */
  async writeMissing(workflowId: string): Promise<void> {
    const looked = this.log.finishedRunIdsAfter(this.lookedThrough ?? this.markedThrough, this.lookedThrough === null, META_KEYS.trace(""));
    this.lookedThrough = looked.throughSeq;
    for (const runId of looked.runIds) this.unwritten.add(runId);
    for (const runId of [...this.unwritten]) {
      // Written since by `keyFor` (a trace read), or due now that its log is complete.
      if (!this.meta.get(META_KEYS.trace(runId))) {
        if (!this.log.isComplete(runId)) continue;
        await this.write(workflowId, runId);
      }
      this.unwritten.delete(runId);
    }
    // Every run that ended so far has its trace: the next wake looks only after this. The mark
    // moves only when a look read more of the log (a run ended, or a wake's first look), so a push
    // that ends no run writes nothing (Meta.set skips a value that did not change).
    if (this.unwritten.size === 0 && looked.throughSeq > 0) this.meta.set(META_KEYS.tracesThrough, String(looked.throughSeq));
  }

  /** The R2 key of a complete run's trace, written now if it was not yet; null while the run goes on. */
  async keyFor(workflowId: string, runId: string): Promise<string | null> {
    if (!this.log.isComplete(runId)) return null;
    return this.meta.get(META_KEYS.trace(runId)) ?? (await this.write(workflowId, runId));
  }

  private async write(workflowId: string, runId: string): Promise<string> {
    const finished = this.log.finished(runId)!;
    const events = this.log.historyAfter(runId, 0).map((r) => r.data.event);
    const attributes = new Map<string, unknown[]>();
    for (const row of this.log.attributes(runId)) {
      const activityId = String(row.data.activityId);
      attributes.set(activityId, [...(attributes.get(activityId) ?? []), row.data.attribute]);
    }
    const trace = buildTrace(
      { workflowId, runId, status: finished.status, output: finished.output, error: finished.error ?? null },
      events,
      attributes,
    );
    const key = traceKey(workflowId, runId);
    await this.bucket.put(key, JSON.stringify(trace), { httpMetadata: { contentType: "application/json" } });
    this.meta.set(META_KEYS.trace(runId), key);
    return key;
  }
}
