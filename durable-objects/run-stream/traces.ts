/** The trace of each finished run, written once to R2 when the run's log is complete. */
import { buildTrace, traceKey } from "../trace.ts";
import { META_KEYS } from "./constants.ts";
import type { EventLog } from "./event-log.ts";
import type { Meta } from "./meta.ts";

export class TraceWriter {
  /** How many of the log's finished runs (`finishedRunIds`, in the order they finished) this wake has looked at. */
  private looked = 0;
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
  ) {}

  /** Does a complete run lack its trace (the watchdog keeps going until it is written)? */
  isMissing(runId: string): boolean {
    return this.log.isComplete(runId) && !this.meta.get(META_KEYS.trace(runId));
  }

  /**
   * Writes the trace of every complete run that has none yet. The first call of a wake looks at
   * every finished run once; later calls only at runs that finished since and those still without
   * a trace. A failure leaves the run for the next call (the alarm's, if no push comes).
   */
  async writeMissing(workflowId: string): Promise<void> {
    for (const runId of this.log.finishedRunIds(this.looked)) {
      this.looked++;
      if (!this.meta.get(META_KEYS.trace(runId))) this.unwritten.add(runId);
    }
    for (const runId of [...this.unwritten]) {
      // Written since by `keyFor` (a trace read), or due now that its log is complete.
      if (!this.meta.get(META_KEYS.trace(runId))) {
        if (!this.log.isComplete(runId)) continue;
        await this.write(workflowId, runId);
      }
      this.unwritten.delete(runId);
    }
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
