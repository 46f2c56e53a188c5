/**
 * The DO's `meta` table: small named values (the workflow id, the schema version, the marks of the
 * parts; keys in constants.ts META_KEYS), read once when the DO wakes (storage.ts `openStorage`)
 * and kept in memory, written through. Its own module so that the parts that keep a value here
 * need nothing else of storage.ts, which imports their tables.
 *
 * Keys named for one run (`<kind>:<runId>`: a run's trace key, its webhooks' mark, its history that
 * never closes) are not read at a wake: a workflow that continued as new thousands of times has
 * thousands of them, and a wake needs one or two. Each is read from the table when asked for
 * (one lookup by the key), and none is kept.
 */

/** A key named for one run (`<kind>:<runId>`): read when asked for, not at each wake. */
export function isRunKey(key: string): boolean {
  return key.includes(":");
}

/** What `openStorage` reads of the table at a wake: every value but those of run keys (`isRunKey`). */
export const WAKE_META_QUERY = "SELECT key, value FROM meta WHERE instr(key, ':') = 0";

export class Meta {
  private readonly values = new Map<string, string>();
  /** The table may hold run keys: false for a DO created this wake until it writes one (nothing to look up). */
  private runKeysStored: boolean;

  /** `fresh`: the DO was just created, so the table holds nothing but `entries`. */
  constructor(
    private readonly sql: SqlStorage,
    entries: Iterable<readonly [string, string]>,
    fresh = false,
  ) {
    for (const [key, value] of entries) if (!isRunKey(key)) this.values.set(key, value);
    this.runKeysStored = !fresh;
  }

  get(key: string): string | null {
    if (!isRunKey(key)) return this.values.get(key) ?? null;
    if (!this.runKeysStored) return null;
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0]?.value ?? null;
  }

  set(key: string, value: string): void {
    const runKey = isRunKey(key);
    if (!runKey && this.values.get(key) === value) return;
    this.sql.exec("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value);
    if (runKey) this.runKeysStored = true;
    else this.values.set(key, value);
  }
}
