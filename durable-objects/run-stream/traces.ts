/** The trace of each finished run, written once to R2 when the run's log is complete. */
import { buildTrace, traceKey } from "../trace.ts";
import { META_KEYS } from "./constants.ts";
import type { EventLog } from "./event-log.ts";
import type { Meta } from "./meta.ts";

export class TraceWriter {
  constructor(
    private readonly bucket: R2Bucket,
    private readonly log: EventLog,
    private readonly meta: Meta,
  ) {}

  /** Does a complete run lack its trace (the watchdog keeps going until it is written)? */
  isMissing(runId: string): boolean {
    return this.log.isComplete(runId) && !this.meta.get(META_KEYS.trace(runId));
  }

  /** Writes the trace of every finished run that has none yet. */
  async writeMissing(workflowId: string): Promise<void> {
    for (const runId of this.log.finishedRunIds()) {
      if (this.isMissing(runId)) await this.write(workflowId, runId);
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
