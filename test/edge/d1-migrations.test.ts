/**
 * D1 migrations applied to a database that already holds data, as they are applied in production
 * (`wrangler d1 migrations apply`: each file at once, in order). The database is MIGRATION_TEST_DB,
 * an empty D1 of this file's own (test/edge/vitest.config.ts), brought to the migration before the
 * one under test, given rows, then migrated.
 */
import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type MergedStep, stepRunStatement } from "../../durable-objects/run-stream/projection.ts";
import { upsertCodeCatalog } from "../../src/db/workflows.ts";

const db = env.MIGRATION_TEST_DB;
const migrationsBefore = (name: string) => env.TEST_MIGRATIONS.filter((m) => m.name < name);

const indexesOf = async (table: string) =>
  (
    await db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name")
      .bind(table)
      .all<{ name: string }>()
  ).results.map((r) => r.name);

describe("migration 0011: step rows keyed by the Temporal run", () => {
  it("keeps every step row as it was, gives it its run row's Temporal run, and keys rows by the Temporal run from then on", async () => {
    // The file's own database starts empty: nothing of 0011 may be there before it is applied.
    expect((await db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'step_runs'").first<{ n: number }>())!.n).toBe(0);
    await applyD1Migrations(db, migrationsBefore("0011_"));

    await db.batch([
      db.prepare("INSERT INTO organizations (id, name) VALUES ('org_m', 'Migrated org')"),
      db.prepare("INSERT INTO workflows (id, name, kind, input_schema, output_schema) VALUES ('wf_m', 'two_steps', 'code', '{}', '{}')"),
      db.prepare(
        `INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, temporal_run_id, status, input) VALUES
         ('run-1', 'org_m', 'wf_m', 'two_steps', 'two_steps-run-1', 'temporal-1', 'completed', '{}'),
         ('run-2', 'org_m', 'wf_m', 'two_steps', 'two_steps-run-2', NULL, 'scheduled', '{}')`,
      ),
      db.prepare(
        `INSERT INTO step_runs (id, run_id, organization_id, step_id, step_name, attempt, status, outputs, error, created_at, updated_at) VALUES
         ('s-1', 'run-1', 'org_m', '1', 'a', 1, 'completed', '{"a":1}', NULL, '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:01.500Z'),
         ('s-2', 'run-1', 'org_m', '2', 'b', 1, 'failed', NULL, 'boom', '2026-01-01T00:00:02.000Z', '2026-01-01T00:00:02.500Z'),
         ('s-3', 'run-1', 'org_m', '2', 'b', 2, 'running', NULL, NULL, '2026-01-01T00:00:03.000Z', '2026-01-01T00:00:03.000Z'),
         ('s-4', 'run-2', 'org_m', '1', 'a', 1, 'running', NULL, NULL, '2026-01-01T00:00:04.000Z', '2026-01-01T00:00:04.000Z')`,
      ),
      // For migration 0023: a workflow renamed after its run (the run shows the name it had then).
      db.prepare(
        "INSERT INTO workflows (id, name, kind, input_schema, output_schema) VALUES ('wf_r', 'monday-briefing', 'prompt', '{}', '{}')",
      ),
      db.prepare(
        "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES ('run-r', 'org_m', 'wf_r', 'weekly-digest', 'run_prompt-run-r', 'completed', '{}')",
      ),
      // For migration 0026: a workflow whose name and former name are not ASCII.
      db.prepare(
        "INSERT INTO workflows (id, name, kind, input_schema, output_schema) VALUES ('wf_u', '\u00c4rzte Caf\u00e9', 'prompt', '{}', '{}')",
      ),
      db.prepare(
        "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES ('run-u', 'org_m', 'wf_u', '\u00d6L', 'run_prompt-run-u', 'completed', '{}')",
      ),
    ]);
    const before = (await db.prepare("SELECT * FROM step_runs ORDER BY id").all<Record<string, unknown>>()).results;
    expect(await indexesOf("step_runs")).toEqual(["step_runs_run_step_attempt_uq"]);

    await applyD1Migrations(db, env.TEST_MIGRATIONS);

    // Every row kept, every column as it was; the Temporal run is the run row's (none known: ''),
    // and (migration 0017) no row's outputs are in the log.
    const after = (await db.prepare("SELECT * FROM step_runs ORDER BY id").all<Record<string, unknown>>()).results;
    expect(after).toEqual(
      before.map((row) => ({ ...row, temporal_run_id: row.run_id === "run-1" ? "temporal-1" : "", outputs_in_log: 0 })),
    );
    expect(await indexesOf("step_runs")).toEqual(["step_runs_run_temporal_run_step_attempt_uq"]);
    // The migrated table is the one every other database of these tests has.
    const columns = (d: D1Database) =>
      d.prepare("SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info('step_runs') ORDER BY cid").all();
    expect((await columns(db)).results).toEqual((await columns(env.DB)).results);

    // The projection after the deploy: the end of an attempt that was running before it updates
    // that attempt's row (found by its key; its id stays), and a later Temporal run's same attempt
    // gets a row of its own.
    const step = (runId: string, state: MergedStep["status"], outputs: unknown): MergedStep => ({
      seqs: [],
      runId,
      activityId: "2",
      attempt: 2,
      stepName: "b",
      status: state,
      outputs,
      error: null,
      firstAt: "2026-01-01T00:00:05.000Z",
      lastAt: "2026-01-01T00:00:05.000Z",
    });
    await db.batch([
      await stepRunStatement(db, "two_steps-run-1", step("temporal-1", "completed", { b: "first run" })),
      await stepRunStatement(db, "two_steps-run-1", step("temporal-2", "completed", { b: "reset's run" })),
    ]);
    const rows = await db
      .prepare(
        "SELECT id, temporal_run_id, status, outputs, created_at, updated_at FROM step_runs WHERE run_id = 'run-1' AND step_id = '2' AND attempt = 2 ORDER BY temporal_run_id",
      )
      .all<Record<string, unknown>>();
    expect(rows.results).toEqual([
      {
        id: "s-3",
        temporal_run_id: "temporal-1",
        status: "completed",
        outputs: JSON.stringify({ b: "first run" }),
        created_at: "2026-01-01T00:00:03.000Z",
        updated_at: "2026-01-01T00:00:05.000Z",
      },
      {
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        temporal_run_id: "temporal-2",
        status: "completed",
        outputs: JSON.stringify({ b: "reset's run" }),
        created_at: "2026-01-01T00:00:05.000Z",
        updated_at: "2026-01-01T00:00:05.000Z",
      },
    ]);
    // Code older than 0011 upserts on the key it dropped: D1 refuses the statement, so that code's
    // projection batches stay pending until the new Worker runs (docs/deploy.md).
    await expect(
      db
        .prepare(
          "INSERT INTO step_runs (id, run_id, organization_id, step_id, attempt, status) VALUES ('s-6', 'run-1', 'org_m', '9', 1, 'running') ON CONFLICT (run_id, step_id, attempt) DO NOTHING",
        )
        .run(),
    ).rejects.toThrow(/ON CONFLICT clause does not match/);
    // The new key is enforced: the same attempt of the same Temporal run cannot have two rows.
    await expect(
      db
        .prepare(
          "INSERT INTO step_runs (id, run_id, organization_id, temporal_run_id, step_id, attempt, status) VALUES ('s-5', 'run-1', 'org_m', 'temporal-1', '1', 1, 'running')",
        )
        .run(),
    ).rejects.toThrow(/UNIQUE constraint failed/);
  });
});

describe("migration 0015: each organization's open runs, counted by triggers", () => {
  const openCounts = async (d: D1Database) =>
    (
      await d
        .prepare(
          `SELECT o.id, o.open_runs AS counted,
             (SELECT COUNT(*) FROM runs r WHERE r.organization_id = o.id AND r.status IN ('scheduled', 'running')) AS actual
           FROM organizations o ORDER BY o.id`,
        )
        .all<{ id: string; counted: number; actual: number }>()
    ).results;

  it("backfills the count of runs open before it (the rows of the test above), on the migrated database", async () => {
    const counts = await openCounts(db);
    expect(counts.find((c) => c.id === "org_m")?.actual).toBeGreaterThan(0);
    for (const c of counts) expect(c.counted, c.id).toBe(c.actual);
  });

  it("keeps the count through inserts, ends, a reset's reopening and deletes", async () => {
    const d = env.DB;
    const org = `org_open_${crypto.randomUUID().slice(0, 8)}`;
    await d.prepare("INSERT INTO organizations (id, name) VALUES (?, 'Open runs')").bind(org).run();
    const wf = (await d.prepare("SELECT id FROM workflows LIMIT 1").first<{ id: string }>())?.id;
    if (!wf)
      await d
        .prepare("INSERT INTO workflows (id, name, kind, input_schema, output_schema) VALUES ('wf_open', 'hello', 'code', '{}', '{}')")
        .run();
    const insert = (id: string, status: string) =>
      d
        .prepare(
          "INSERT INTO runs (id, organization_id, workflow_id, workflow_name, temporal_workflow_id, status, input) VALUES (?, ?, ?, 'hello', ?, ?, '{}')",
        )
        .bind(id, org, wf ?? "wf_open", `hello-${id}`, status)
        .run();
    const setStatus = (id: string, status: string) => d.prepare("UPDATE runs SET status = ? WHERE id = ?").bind(status, id).run();
    const counted = async () =>
      (await d.prepare("SELECT open_runs AS n FROM organizations WHERE id = ?").bind(org).first<{ n: number }>())!.n;
    const ids = Array.from({ length: 4 }, () => crypto.randomUUID());
    await insert(ids[0]!, "scheduled");
    await insert(ids[1]!, "scheduled");
    await insert(ids[2]!, "running");
    await insert(ids[3]!, "completed");
    expect(await counted()).toBe(3);
    await setStatus(ids[0]!, "running"); // open to open
    await setStatus(ids[0]!, "running"); // a rewrite of the same status
    expect(await counted()).toBe(3);
    await setStatus(ids[1]!, "failed");
    await setStatus(ids[2]!, "continued_as_new");
    expect(await counted()).toBe(1);
    await setStatus(ids[3]!, "running"); // a reset reopens a finished run
    expect(await counted()).toBe(2);
    await d.prepare("DELETE FROM runs WHERE id IN (?, ?)").bind(ids[0], ids[1]).run();
    expect(await counted()).toBe(1);
    const mine = (await openCounts(d)).find((c) => c.id === org)!;
    expect(mine.counted).toBe(mine.actual);
  });
});

describe("migration 0023: the names a workflow had before a rename", () => {
  const formerNames = async (d: D1Database, workflowId: string) =>
    (
      await d.prepare("SELECT name FROM workflow_former_names WHERE workflow_id = ? ORDER BY name").bind(workflowId).all<{ name: string }>()
    ).results.map((r) => r.name);

  it("backfills the names runs show that their workflow no longer has (the rows of the first test), and no others", async () => {
    expect(await formerNames(db, "wf_r")).toEqual(["weekly-digest"]);
    expect(await formerNames(db, "wf_m")).toEqual([]);
  });

  it("keeps each name a rename replaces, once, and nothing for an update that keeps the name", async () => {
    const d = env.DB;
    const id = `wf_rename_${crypto.randomUUID().slice(0, 8)}`;
    await d
      .prepare("INSERT INTO workflows (id, name, kind, input_schema, output_schema) VALUES (?, ?, 'prompt', '{}', '{}')")
      .bind(id, `${id}-a`)
      .run();
    const rename = (name: string) => d.prepare("UPDATE workflows SET name = ? WHERE id = ?").bind(name, id).run();
    await d.prepare("UPDATE workflows SET description = 'edited', name = name WHERE id = ?").bind(id).run();
    expect(await formerNames(d, id)).toEqual([]);
    await rename(`${id}-b`);
    await rename(`${id}-a`);
    await rename(`${id}-b`);
    expect(await formerNames(d, id)).toEqual([`${id}-a`, `${id}-b`]);
  });
});

describe("migration 0026: workflow names folded for search", () => {
  const folds = async (d: D1Database, sql: string) => (await d.prepare(sql).all<{ name: string; name_folded: string | null }>()).results;

  it("folds the all-ASCII names (lower() is their fold) and leaves the others unfolded (NULL), which the next catalog publish folds", async () => {
    const current = "SELECT name, name_folded FROM workflows WHERE id IN ('wf_m', 'wf_r', 'wf_u') ORDER BY id";
    const former = "SELECT name, name_folded FROM workflow_former_names WHERE workflow_id IN ('wf_r', 'wf_u') ORDER BY workflow_id";
    expect(await folds(db, current)).toEqual([
      { name: "two_steps", name_folded: "two_steps" },
      { name: "monday-briefing", name_folded: "monday-briefing" },
      { name: "\u00c4rzte Caf\u00e9", name_folded: null },
    ]);
    expect(await folds(db, former)).toEqual([
      { name: "weekly-digest", name_folded: "weekly-digest" },
      { name: "\u00d6L", name_folded: null },
    ]);
    await upsertCodeCatalog(db, []);
    expect((await folds(db, current))[2]).toEqual({ name: "\u00c4rzte Caf\u00e9", name_folded: "\u00e4rzte caf\u00e9" });
    expect((await folds(db, former))[1]).toEqual({ name: "\u00d6L", name_folded: "\u00f6l" });
  });

  it("a former name keeps its workflow's fold; a rename that leaves a stale fold unfolds the row, one that changes ASCII case only keeps it", async () => {
    const d = env.DB;
    const id = `wf_fold_${crypto.randomUUID().slice(0, 8)}`;
    await d
      .prepare(
        "INSERT INTO workflows (id, name, name_folded, kind, input_schema, output_schema) VALUES (?, 'Abc', 'abc', 'prompt', '{}', '{}')",
      )
      .bind(id)
      .run();
    const rename = (name: string, folded?: string) =>
      (folded === undefined
        ? d.prepare("UPDATE workflows SET name = ? WHERE id = ?").bind(name, id)
        : d.prepare("UPDATE workflows SET name = ?, name_folded = ? WHERE id = ?").bind(name, folded, id)
      ).run();
    const current = async () =>
      (await d.prepare("SELECT name_folded FROM workflows WHERE id = ?").bind(id).first<{ name_folded: string | null }>())!.name_folded;
    await rename("ABC");
    expect(await current()).toBe("abc");
    await rename("\u00c4bc");
    expect(await current()).toBeNull();
    await rename("\u00d6l", "\u00f6l");
    expect(await current()).toBe("\u00f6l");
    expect(
      (await d.prepare("SELECT name, name_folded FROM workflow_former_names WHERE workflow_id = ? ORDER BY name").bind(id).all()).results,
    ).toEqual([
      { name: "ABC", name_folded: "abc" },
      { name: "Abc", name_folded: "abc" },
      { name: "\u00c4bc", name_folded: null },
    ]);
  });
});
