/**
 * The RunStream's storage schema is versioned: a DO whose log was written by the code before
 * versioning (schema v1, no `history_type` column, no recorded version) is migrated when it next
 * wakes, and keeps working: its stream completes, its history pages, new events append. What the
 * DO keeps in memory about its log (latest run, outcomes, history totals, rows D1 lacks) is read
 * back from storage on every wake.
 */
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { STORAGE_SCHEMA_VERSION } from "../../durable-objects/run-stream/constants.ts";
import type { RunStream } from "../../durable-objects/run-stream.ts";
import { runStream } from "../../src/run-stream-client.ts";
import { seedCatalog, seedOrganization } from "./helpers.ts";
import { closeEvent, continuedAsNewEvents, createRunningRun, finishedEvent, historyEvent, push } from "./stream-helpers.ts";

/** Turns the DO's storage back into what the unversioned code wrote (v1). */
function downgradeToV1(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE events_v1 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, source_key TEXT NOT NULL UNIQUE, type TEXT NOT NULL, at TEXT NOT NULL,
    run_id TEXT, history_event_id INTEGER, data TEXT NOT NULL, projected INTEGER NOT NULL DEFAULT 0)`);
  sql.exec("INSERT INTO events_v1 SELECT seq, source_key, type, at, run_id, history_event_id, data, projected FROM events");
  sql.exec("DROP TABLE events");
  sql.exec("ALTER TABLE events_v1 RENAME TO events");
  sql.exec("CREATE INDEX IF NOT EXISTS events_run_history ON events (run_id, history_event_id)");
  sql.exec("DELETE FROM meta WHERE key = 'schemaVersion'");
}

describe("RunStream storage migrations", () => {
  let organizationId: string;
  beforeAll(async () => {
    await seedCatalog();
    ({ organizationId } = await seedOrganization());
  });

  it("a DO with unversioned (v1) storage is migrated on wake and keeps its log", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    await push(workflowId, [historyEvent(runId, 1), historyEvent(runId, 2), closeEvent(runId, 3), finishedEvent(runId)]);
    const stub = () => runStream(env, workflowId);
    await runInDurableObject(stub(), (_i: RunStream, state) => downgradeToV1(state.storage.sql));
    const columns = await runInDurableObject(stub(), (_i: RunStream, state) =>
      state.storage.sql
        .exec<{ name: string }>("PRAGMA table_info(events)")
        .toArray()
        .map((c) => c.name),
    );
    expect(columns).not.toContain("history_type");

    await evictDurableObject(stub());
    // The next wake migrates: the column is back and backfilled, the version recorded.
    const after = await runInDurableObject(stub(), (_i: RunStream, state) => ({
      version: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schemaVersion'").toArray()[0]?.value,
      types: state.storage.sql
        .exec<{ t: string | null }>("SELECT history_type AS t FROM events WHERE type = 'history' ORDER BY seq")
        .toArray()
        .map((r) => r.t),
      indexes: state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'events_%' ORDER BY name")
        .toArray()
        .map((r) => r.name),
    }));
    expect(after.version).toBe(String(STORAGE_SCHEMA_VERSION));
    // v6: a wake reads the runs' starts and ends through their own index, not the whole log; v7: a
    // run's outcome is read by run when asked for.
    expect(after.indexes).toEqual(["events_pending", "events_run_boundaries", "events_run_history", "events_run_outcomes"]);
    expect(after.types).toEqual([
      "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
      "EVENT_TYPE_ACTIVITY_TASK_COMPLETED",
      "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
    ]);
    expect(await stub().streamState(runId)).toEqual({ runId, finished: true, lastEventId: 3 });
    const page = await stub().historyPage(runId, 0, 10, false);
    expect((page.events as Array<{ eventId: string }>).map((e) => e.eventId)).toEqual(["1", "2", "3"]);
    expect(page.nextAfterEventId).toBeNull();
  });

  it("a fresh DO gets the schema a migrated one has: the same tables, columns and indexes", async () => {
    const schemaOf = (sql: SqlStorage) => ({
      objects: sql
        .exec<{ type: string; name: string }>("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name")
        .toArray(),
      events: sql
        .exec<{ name: string }>("PRAGMA table_info(events)")
        .toArray()
        .map((c) => c.name)
        .sort(),
    });
    const fresh = await createRunningRun(organizationId);
    await push(fresh.workflowId, [historyEvent(fresh.runId, 1)]);
    const migrated = await createRunningRun(organizationId);
    await push(migrated.workflowId, [historyEvent(migrated.runId, 1)]);
    await runInDurableObject(runStream(env, migrated.workflowId), (_i: RunStream, state) => downgradeToV1(state.storage.sql));
    await evictDurableObject(runStream(env, migrated.workflowId));
    const [a, b] = await Promise.all(
      [fresh, migrated].map(({ workflowId }) =>
        runInDurableObject(runStream(env, workflowId), (_i: RunStream, state) => schemaOf(state.storage.sql)),
      ),
    );
    expect(b).toEqual(a);
    expect(a?.objects).toContainEqual({ type: "index", name: "events_run_boundaries" });
  });

  it("a fresh DO starts at the current version", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const version = await runInDurableObject(
      runStream(env, workflowId),
      (_i: RunStream, state) =>
        state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schemaVersion'").toArray()[0]?.value,
    );
    expect(version).toBe(String(STORAGE_SCHEMA_VERSION));
  });

  it("storage at v2 (webhook outbox table made on every wake) is migrated to v3 on wake", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const stub = () => runStream(env, workflowId);
    await runInDurableObject(stub(), (_i: RunStream, state) => {
      state.storage.sql.exec("DROP TABLE webhook_outbox");
      state.storage.sql.exec("UPDATE meta SET value = '2' WHERE key = 'schemaVersion'");
    });
    await evictDurableObject(stub());
    const after = await runInDurableObject(stub(), (_i: RunStream, state) => ({
      version: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schemaVersion'").toArray()[0]?.value,
      outbox: state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'webhook_outbox'").toArray().length,
    }));
    expect(after).toEqual({ version: String(STORAGE_SCHEMA_VERSION), outbox: 1 });
    expect(await stub().webhookOutbox()).toEqual([]);
    expect(await stub().streamState(runId)).toEqual({ runId, finished: false, lastEventId: 1 });
  });

  it("storage at v3 (start outbox table made on every wake) is migrated to v4 on wake", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    await push(workflowId, [historyEvent(runId, 1)]);
    const stub = () => runStream(env, workflowId);
    await runInDurableObject(stub(), (_i: RunStream, state) => {
      state.storage.sql.exec("DROP TABLE run_start");
      state.storage.sql.exec("UPDATE meta SET value = '3' WHERE key = 'schemaVersion'");
    });
    await evictDurableObject(stub());
    const after = await runInDurableObject(stub(), (_i: RunStream, state) => ({
      version: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schemaVersion'").toArray()[0]?.value,
      outbox: state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'run_start'").toArray().length,
    }));
    expect(after).toEqual({ version: String(STORAGE_SCHEMA_VERSION), outbox: 1 });
    expect(await stub().streamState(runId)).toEqual({ runId, finished: false, lastEventId: 1 });
  });

  it("storage at v6 (no index of the runs' outcomes) is migrated to v7 on wake, and each run's outcome is read through it", async () => {
    const { workflowId, runId: first } = await createRunningRun(organizationId);
    const second = crypto.randomUUID();
    const completed = { ...finishedEvent(second), data: { ...finishedEvent(second).data, output: { answer: 42 } } };
    await push(workflowId, [
      historyEvent(first, 1),
      ...continuedAsNewEvents(first, 2, second),
      historyEvent(second, 1),
      closeEvent(second, 2),
      completed,
    ]);
    const stub = () => runStream(env, workflowId);
    await runInDurableObject(stub(), (_i: RunStream, state) => {
      state.storage.sql.exec("DROP INDEX events_run_outcomes");
      state.storage.sql.exec("DELETE FROM meta WHERE key = 'tracesThrough'");
      state.storage.sql.exec("UPDATE meta SET value = '6' WHERE key = 'schemaVersion'");
    });
    await evictDurableObject(stub());
    const after = await runInDurableObject(stub(), (_i: RunStream, state) => ({
      version: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schemaVersion'").toArray()[0]?.value,
      index: state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'events_run_outcomes'").toArray()
        .length,
    }));
    expect(after).toEqual({ version: String(STORAGE_SCHEMA_VERSION), index: 1 });
    expect(await stub().loggedOutput(second)).toEqual({ answer: 42 });
    expect(await stub().loggedOutput(first)).toBeNull();
    expect(await stub().streamState(first)).toEqual({ runId: first, finished: true, lastEventId: 2 });
    expect(await stub().streamState()).toEqual({ runId: second, finished: true, lastEventId: 2 });
    // Both traces were written before; the wake's look for missing ones finds none and marks where the next begins.
    await push(workflowId, [historyEvent(second, 2)]);
    const marks = await runInDurableObject(stub(), (_i: RunStream, state) =>
      state.storage.sql
        .exec<{ key: string }>("SELECT key FROM meta WHERE key LIKE 'trace%' ORDER BY key")
        .toArray()
        .map((r) => r.key),
    );
    expect(marks).toEqual([`trace:${first}`, `trace:${second}`, "tracesThrough"].sort());
  });

  it("a woken DO knows its log again: latest run, history totals, completion", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const stub = () => runStream(env, workflowId);
    await push(workflowId, [historyEvent(runId, 1), historyEvent(runId, 2)]);
    await evictDurableObject(stub());
    expect(await stub().streamState()).toEqual({ runId, finished: false, lastEventId: 2 });
    await push(workflowId, [historyEvent(runId, 2), closeEvent(runId, 3), finishedEvent(runId)]);
    await evictDurableObject(stub());
    expect(await stub().streamState()).toEqual({ runId, finished: true, lastEventId: 3 });
    const page = await stub().historyPage(undefined, 0, 10, false);
    expect(page.workflow).toMatchObject({ runId, status: "completed", historyLength: 3, closed: true });
  });

  it("a row D1 lacks when the DO goes away is projected after the next wake", async () => {
    const { workflowId, runId } = await createRunningRun(organizationId);
    const stub = () => runStream(env, workflowId);
    await push(workflowId, [historyEvent(runId, 1), closeEvent(runId, 2), finishedEvent(runId)]);
    const status = async () =>
      (await env.DB.prepare("SELECT status FROM runs WHERE temporal_workflow_id = ?").bind(workflowId).first<{ status: string }>())?.status;
    expect(await status()).toBe("completed");
    // As if the outcome's D1 batch had failed: the log row is pending again, the D1 row still running.
    await runInDurableObject(stub(), async (_i: RunStream, state) => {
      state.storage.sql.exec("UPDATE events SET projected = 0 WHERE type = 'run.finished'");
      await state.storage.setAlarm(Date.now() + 60_000);
    });
    await env.DB.prepare("UPDATE runs SET status = 'running', completed_at = NULL WHERE temporal_workflow_id = ?").bind(workflowId).run();
    await evictDurableObject(stub());
    expect(await runDurableObjectAlarm(stub())).toBe(true);
    expect(await status()).toBe("completed");
    expect(await runInDurableObject(stub(), (_i: RunStream, state) => state.storage.getAlarm())).toBeNull();
  });
});
