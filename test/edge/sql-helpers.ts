/**
 * A Durable Object's `SqlStorage` that counts what goes through it: the statements run, and the
 * rows their cursors read (`rowsRead`, once a cursor is read through). What a check costs the DO.
 */
export function instrumentedSql(sql: SqlStorage) {
  let cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];
  const counted = new Proxy(sql, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop !== "exec") return typeof value === "function" ? value.bind(target) : value;
      return (...args: Parameters<SqlStorage["exec"]>) => {
        const cursor = target.exec(...args);
        cursors.push(cursor);
        return cursor;
      };
    },
  });
  return {
    sql: counted,
    /** Statements run since the start (or the last `reset`). */
    statements: () => cursors.length,
    /** Rows those statements read. */
    rowsRead: () => cursors.reduce((n, cursor) => n + cursor.rowsRead, 0),
    reset: () => {
      cursors = [];
    },
  };
}
