/**
 * The DO's SQLite schema, versioned. `migrate` brings older storage up to STORAGE_SCHEMA_VERSION,
 * one step at a time, so a DO created by older code keeps its log:
 *
 * - v1: the schema before versioning (events, meta, push_nonces). A DO without a recorded
 *   version is treated as v0 and gets v1's `CREATE ... IF NOT EXISTS`, which keeps what it has.
 * - v2: `events.history_type` (the Temporal event type of `history` rows), backfilled from the
 *   stored JSON, so waiting detection and stream completion read a column instead of parsing JSON.
 * - v3: the webhook outbox's table (webhook-outbox.ts), until then created on every wake.
 * - v4: the start outbox's table (run-starter.ts), until then created on every wake.
 * - v5: `events.parts` and the `event_parts` table: entries too large for one row (event-parts.ts).
 * - v6: `events_run_boundaries`, the runs' starts and ends: a wake reads every run's outcome
 *   (event-log.ts `hydrate`), which otherwise scanned the whole log (thousands of runs, in a
 *   workflow that continues as new for months).
 * - v7: `events_run_outcomes`, each run's `run.finished` rows by run: a wake no longer reads every
 *   run's outcome (event-log.ts keeps the few it was asked for); one run's is found through this.
 *
 * A new DO skips all of that: `createSchema` makes the current schema in one `exec`, when the DO
 * first needs storage (`openStorage` only probes), so a DO that never keeps anything (a push for
 * a run the edge never accepted: push-admission.ts; a start refused before acceptance:
 * run-starter.ts) writes nothing at all.
 *
 * `openStorage` hydrates the `meta` table (meta.ts) once when the DO wakes, but the keys named for one run.
 */
import { META_KEYS, NONCE_CLEANUP_INTERVAL_MS, STORAGE_SCHEMA_VERSION } from "./constants.ts";
import { EVENT_PARTS_TABLE } from "./event-parts.ts";
import { RUN_START_TABLE } from "./run-starter.ts";
import { WEBHOOK_OUTBOX_TABLE } from "./webhook-outbox.ts";
import { Meta, WAKE_META_QUERY } from "./meta.ts";

/** The log's `run.started` and `run.finished` rows, in log order (a small part of a long log). */
const RUN_BOUNDARIES_INDEX =
  "CREATE INDEX IF NOT EXISTS events_run_boundaries ON events (seq) WHERE type IN ('run.started', 'run.finished')";

/** Each run's `run.finished` rows, by run: its outcome is read when asked for (event-log.ts), not at each wake. */
const RUN_OUTCOMES_INDEX = "CREATE INDEX IF NOT EXISTS events_run_outcomes ON events (run_id, seq) WHERE type = 'run.finished'";

const MIGRATIONS: ReadonlyArray<(sql: SqlStorage) => void> = [
  // v0 → v1
  (sql) => {
    sql.exec(`CREATE TABLE IF NOT EXISTS events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      source_key TEXT NOT NULL UNIQUE,
      type TEXT NOT NULL,
      at TEXT NOT NULL,
      run_id TEXT,
      history_event_id INTEGER,
      data TEXT NOT NULL,
      projected INTEGER NOT NULL DEFAULT 0
    )`);
    sql.exec("CREATE INDEX IF NOT EXISTS events_run_history ON events (run_id, history_event_id)");
    sql.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    // Nonces of the signed pushes this run received, while they could still pass the time check.
    sql.exec("CREATE TABLE IF NOT EXISTS push_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)");
  },
  // v1 → v2
  (sql) => {
    const columns = sql.exec<{ name: string }>("PRAGMA table_info(events)").toArray();
    if (!columns.some((c) => c.name === "history_type")) sql.exec("ALTER TABLE events ADD COLUMN history_type TEXT");
    sql.exec("UPDATE events SET history_type = json_extract(data, '$.event.eventType') WHERE type = 'history' AND history_type IS NULL");
    sql.exec("CREATE INDEX IF NOT EXISTS events_pending ON events (projected) WHERE projected <> 1");
  },
  // v2 → v3: the webhook outbox's table joins the versioned schema (before, it was created on every wake).
  (sql) => {
    sql.exec(WEBHOOK_OUTBOX_TABLE);
  },
  // v3 → v4: so does the start outbox's table.
  (sql) => {
    sql.exec(RUN_START_TABLE);
  },
  // v4 → v5: entries too large for one row are kept in pieces.
  (sql) => {
    const columns = sql.exec<{ name: string }>("PRAGMA table_info(events)").toArray();
    if (!columns.some((c) => c.name === "parts")) sql.exec("ALTER TABLE events ADD COLUMN parts INTEGER NOT NULL DEFAULT 0");
    sql.exec(EVENT_PARTS_TABLE);
  },
  // v5 → v6: the runs' boundaries get their own index.
  (sql) => {
    sql.exec(RUN_BOUNDARIES_INDEX);
  },
  // v6 → v7: the runs' outcomes, by run.
  (sql) => {
    sql.exec(RUN_OUTCOMES_INDEX);
  },
];

/**
 * The current schema in one batch of statements: what a new DO gets (the same as v0 migrated to
 * the current version). Only ever run on storage without tables (`createSchema`).
 */
const CURRENT_SCHEMA = `
  CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source_key TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    run_id TEXT,
    history_event_id INTEGER,
    data TEXT NOT NULL,
    projected INTEGER NOT NULL DEFAULT 0,
    history_type TEXT,
    parts INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX events_run_history ON events (run_id, history_event_id);
  CREATE INDEX events_pending ON events (projected) WHERE projected <> 1;
  ${RUN_BOUNDARIES_INDEX};
  ${RUN_OUTCOMES_INDEX};
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE push_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
  ${WEBHOOK_OUTBOX_TABLE};
  ${RUN_START_TABLE};
  ${EVENT_PARTS_TABLE};
  INSERT INTO meta (key, value) VALUES ('${META_KEYS.schemaVersion}', '${STORAGE_SCHEMA_VERSION}');
`;

/** Brings older storage to the current schema, one step at a time from `found`. */
export function migrate(sql: SqlStorage, found: number): void {
  for (let version = found; version < STORAGE_SCHEMA_VERSION; version++) MIGRATIONS[version]!(sql);
  sql.exec(
    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    META_KEYS.schemaVersion,
    String(STORAGE_SCHEMA_VERSION),
  );
}

/** What opening the storage found: a brand-new DO (no schema yet, nothing to read) or older storage. */
export interface OpenedStorage {
  meta: Meta;
  /**
   * No table existed: every table counts as empty, and `createSchema` must run before the first
   * statement that touches one (the `meta` values are already what it writes).
   */
  fresh: boolean;
  /** The schema version the storage had (0 for a fresh DO or unversioned storage). */
  found: number;
}

function tablesOf(sql: SqlStorage): Set<string> {
  return new Set(
    sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('events', 'meta')")
      .toArray()
      .map((r) => r.name),
  );
}

/**
 * The whole current schema in one `exec` (no version probing, no migration steps), for a DO that
 * `openStorage` found `fresh`. Does nothing where the tables exist already (e.g. a test made them).
 */
export function createSchema(sql: SqlStorage): void {
  if (tablesOf(sql).size === 0) sql.exec(CURRENT_SCHEMA);
}

/**
 * Opens the DO's storage once per wake: one probe. A new DO is reported `fresh` and its schema is
 * left to `createSchema` (nothing is written yet); older storage is migrated. Returns the `meta`
 * table hydrated.
 */
export function openStorage(sql: SqlStorage): OpenedStorage {
  const tables = tablesOf(sql);
  if (tables.size === 0) {
    return { meta: new Meta(sql, [[META_KEYS.schemaVersion, String(STORAGE_SCHEMA_VERSION)]], true), fresh: true, found: 0 };
  }
  // Not the keys named for one run (a trace key per finished run, ...): meta.ts reads each when asked for.
  const read = () => sql.exec<{ key: string; value: string }>(WAKE_META_QUERY).toArray();
  let entries = tables.has("meta") ? read() : [];
  const found = Number(entries.find((e) => e.key === META_KEYS.schemaVersion)?.value ?? 0);
  if (found < STORAGE_SCHEMA_VERSION) {
    migrate(sql, found);
    entries = read();
  }
  return {
    meta: new Meta(
      sql,
      entries.map((e) => [e.key, e.value]),
    ),
    fresh: false,
    found,
  };
}

/**
 * Signed pushes are used once: the run's DO remembers their nonces until they expire. A replay is
 * refused by the nonce's primary key; expired nonces (which the signature's time check refuses on
 * its own) are deleted at most once per NONCE_CLEANUP_INTERVAL_MS, not on every push, and never on
 * a DO that was just created (it has none).
 */
export class PushNonces {
  private nextCleanupAt: number;

  constructor(
    private readonly sql: SqlStorage,
    fresh: boolean,
  ) {
    this.nextCleanupAt = fresh ? Date.now() + NONCE_CLEANUP_INTERVAL_MS : 0;
  }

  /** Claims the nonce; false when it was claimed before (a replay). */
  claim(nonce: { nonce: string; expiresAt: number }): boolean {
    const now = Date.now();
    if (now >= this.nextCleanupAt) {
      this.sql.exec("DELETE FROM push_nonces WHERE expires_at < ?", now);
      this.nextCleanupAt = now + NONCE_CLEANUP_INTERVAL_MS;
    }
    return (
      this.sql
        .exec("INSERT OR IGNORE INTO push_nonces (nonce, expires_at) VALUES (?, ?) RETURNING nonce", nonce.nonce, nonce.expiresAt)
        .toArray().length > 0
    );
  }
}
