/**
 * The DO's `meta` table: small named values (the workflow id, the schema version, the marks of the
 * parts; keys in constants.ts META_KEYS), read once when the DO wakes (storage.ts `openStorage`)
 * and kept in memory, written through. Its own module so that the parts that keep a value here
 * need nothing else of storage.ts, which imports their tables.
 */
export class Meta {
  private readonly values = new Map<string, string>();

  constructor(
    private readonly sql: SqlStorage,
    entries: Iterable<readonly [string, string]>,
  ) {
    for (const [key, value] of entries) this.values.set(key, value);
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
