/**
 * RunStream: one Durable Object per run, addressed by the Temporal workflow id.
 *
 * It owns the run's event log (in its own SQLite storage) and is the single writer of the run's D1
 * row: every status change reaches D1 by being recorded here first. Events arrive at least once
 * (from the host's publisher and from the edge's own reconciliation); each carries a source key,
 * and a key already in the log is dropped, so the log and the row see every event exactly once.
 */
import { DurableObject } from "cloudflare:workers";
import type { RunEvent } from "../src/shared/host-api.ts";

export interface RecordResult {
  accepted: number;
  duplicates: number;
}

export class RunStream extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // Schema before any request is served.
    ctx.blockConcurrencyWhile(async () => {
      this.sql.exec(`CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        source_key TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        data TEXT NOT NULL
      )`);
    });
  }

  /** Appends new events to the log and projects them into D1; duplicates are dropped. */
  async record(workflowId: string, events: RunEvent[]): Promise<RecordResult> {
    let accepted = 0;
    for (const event of events) {
      if (this.hasEvent(event.sourceKey)) continue;
      // Project first: if D1 fails, the event is not in the log and the sender's retry re-applies it.
      await this.project(workflowId, event);
      // RETURNING yields a row only when the insert happened (a concurrent twin may have won).
      accepted += this.sql
        .exec(
          "INSERT OR IGNORE INTO events (source_key, type, at, data) VALUES (?, ?, ?, ?) RETURNING seq",
          event.sourceKey,
          event.type,
          event.at,
          JSON.stringify(event.data),
        )
        .toArray().length;
    }
    return { accepted, duplicates: events.length - accepted };
  }

  /** The log in order, for readers (streams build on this). */
  async events(afterSeq = 0): Promise<Array<RunEvent & { seq: number }>> {
    return this.sql
      .exec<{ seq: number; source_key: string; type: RunEvent["type"]; at: string; data: string }>(
        "SELECT seq, source_key, type, at, data FROM events WHERE seq > ? ORDER BY seq",
        afterSeq,
      )
      .toArray()
      .map((r) => ({ seq: r.seq, sourceKey: r.source_key, type: r.type, at: r.at, data: JSON.parse(r.data) }));
  }

  private hasEvent(sourceKey: string): boolean {
    return this.sql.exec("SELECT 1 FROM events WHERE source_key = ?", sourceKey).toArray().length > 0;
  }

  private async project(workflowId: string, event: RunEvent): Promise<void> {
    const now = new Date().toISOString();
    const data = event.data as Record<string, unknown>;
    switch (event.type) {
      case "run.started":
        await this.env.DB.prepare(
          `UPDATE runs SET status = 'running', temporal_run_id = ?, started_at = COALESCE(started_at, ?), updated_at = ?
           WHERE temporal_workflow_id = ? AND status = 'scheduled'`,
        )
          .bind(String(data.runId), event.at, now, workflowId)
          .run();
        return;
      case "run.finished":
        await this.env.DB.prepare(
          `UPDATE runs SET status = ?, output = ?, error = ?, temporal_run_id = ?, completed_at = ?,
             started_at = COALESCE(started_at, ?), updated_at = ?
           WHERE temporal_workflow_id = ?`,
        )
          .bind(
            String(data.status),
            data.output === undefined || data.output === null ? null : JSON.stringify(data.output),
            (data.error as string | null | undefined) ?? null,
            String(data.runId),
            event.at,
            event.at,
            now,
            workflowId,
          )
          .run();
        return;
    }
  }
}
