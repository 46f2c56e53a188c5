/**
 * The DO's SQLite schema, versioned. `migrate` brings any storage up to STORAGE_SCHEMA_VERSION,
 * one step at a time, so a DO created by older code keeps its log:
 *
 * - v1: the schema before versioning (events, meta, push_nonces). A DO without a recorded
 *   version is treated as v0 and gets v1's `CREATE ... IF NOT EXISTS`, which keeps what it has.
 * - v2: `events.history_type` (the Temporal event type of `history` rows), backfilled from the
 *   stored JSON, so waiting detection and stream completion read a column instead of parsing JSON.
 *
 * `Meta` is the `meta` table, read once when the DO wakes and kept in memory (write-through).
 */
import { META_KEYS, STORAGE_SCHEMA_VERSION } from "./constants.ts";

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
];

/** Brings the storage to the current schema; returns the version it found. */
export function migrate(sql: SqlStorage): number {
  const hasMeta = sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").toArray().length > 0;
  const found = hasMeta
    ? Number(sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", META_KEYS.schemaVersion).toArray()[0]?.value ?? 0)
    : 0;
  for (let version = found; version < STORAGE_SCHEMA_VERSION; version++) MIGRATIONS[version]!(sql);
  if (found !== STORAGE_SCHEMA_VERSION) {
    sql.exec(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      META_KEYS.schemaVersion,
      String(STORAGE_SCHEMA_VERSION),
    );
  }
  return found;
}

/** The `meta` key-value table, hydrated into memory once per wake. */
export class Meta {
  private readonly values = new Map<string, string>();

  constructor(private readonly sql: SqlStorage) {
    for (const row of sql.exec<{ key: string; value: string }>("SELECT key, value FROM meta")) this.values.set(row.key, row.value);
  }

  get(key: string): string | null {
    return this.values.get(key) ?? null;
  }

  set(key: string, value: string): void {
    if (this.values.get(key) === value) return;
    this.sql.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
    this.values.set(key, value);
  }
}

/** Signed pushes are used once: the run's DO remembers their nonces until they expire. */
export function claimPushNonce(sql: SqlStorage, nonce: { nonce: string; expiresAt: number }): boolean {
  sql.exec("DELETE FROM push_nonces WHERE expires_at < ?", Date.now());
  return (
    sql.exec("INSERT OR IGNORE INTO push_nonces (nonce, expires_at) VALUES (?, ?) RETURNING nonce", nonce.nonce, nonce.expiresAt).toArray()
      .length > 0
  );
}
