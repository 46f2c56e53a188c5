/**
 * A D1 binding whose every call passes through one hook first: the benches count or delay the
 * calls (bench/worker-entry.ts, bench/geography/worker.ts), edge tests count them. Statements
 * prepared through it still work inside `batch` (the batch gets the original statements).
 * Web APIs only: it runs in workerd and in Node alike.
 */

export type D1Call =
  | { kind: "statement"; method: "run" | "all" | "first" | "raw"; sql: string }
  | { kind: "batch"; statements: number }
  | { kind: "exec" };

/**
 * Runs before each call. A promise delays the call until it settles; `{ answer }` answers the call
 * with that value instead of running it (a test's stand-in for a replica that lacks a row).
 */
export type D1Hook = (call: D1Call) => void | Promise<void> | { answer: unknown };

export interface D1InterceptOptions {
  /** What `withSession` (a read-replica session) returns; by default the real session, not intercepted. */
  session?: (session: D1DatabaseSession) => D1DatabaseSession;
}

const STATEMENT_METHODS: ReadonlySet<PropertyKey> = new Set(["run", "all", "first", "raw"]);
/** The statement behind each intercepted one, for `batch`. */
const originals = new WeakMap<object, D1PreparedStatement>();

function proceed(outcome: ReturnType<D1Hook>, call: () => unknown): unknown {
  if (outcome instanceof Promise) return outcome.then(call);
  if (outcome && "answer" in outcome) return Promise.resolve(outcome.answer);
  return call();
}

function interceptStatement(statement: D1PreparedStatement, hook: D1Hook, sql: string): D1PreparedStatement {
  const proxy = new Proxy(statement, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "bind") return (...args: unknown[]) => interceptStatement(target.bind(...args), hook, sql);
      if (STATEMENT_METHODS.has(prop)) {
        const method = prop as "run" | "all" | "first" | "raw";
        return (...args: unknown[]) => proceed(hook({ kind: "statement", method, sql }), () => Reflect.apply(value, target, args));
      }
      return value.bind(target);
    },
  });
  originals.set(proxy, statement);
  return proxy;
}

export function interceptD1<T extends D1Database | D1DatabaseSession>(db: T, hook: D1Hook, options: D1InterceptOptions = {}): T {
  return new Proxy(db, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "prepare") return (sql: string) => interceptStatement(target.prepare(sql), hook, sql);
      if (prop === "batch") {
        return (statements: D1PreparedStatement[]) =>
          proceed(hook({ kind: "batch", statements: statements.length }), () => target.batch(statements.map((s) => originals.get(s) ?? s)));
      }
      if (prop === "exec") return (sql: string) => proceed(hook({ kind: "exec" }), () => (target as D1Database).exec(sql));
      if (prop === "withSession" && options.session) {
        const session = options.session;
        return (...args: unknown[]) => session(Reflect.apply(value, target, args) as D1DatabaseSession);
      }
      return (value as (...args: unknown[]) => unknown).bind(target);
    },
  });
}

/**
 * Intercepts a D1 binding object in place (its own `prepare`, `batch` and `exec` shadow the
 * binding's), for code that took the binding before a caller could wrap it, such as a Durable
 * Object's parts in the edge tests' isolate. Returns the undo.
 */
export function interceptD1InPlace(db: D1Database, hook: D1Hook): () => void {
  const methods = ["prepare", "batch", "exec"] as const;
  // The binding's own methods, reached through a view so that the shadowing below does not loop.
  const view = Object.create(db) as D1Database;
  for (const name of methods)
    Object.defineProperty(view, name, { value: (db[name] as (...a: unknown[]) => unknown).bind(db), writable: true, configurable: true });
  const wrapped = interceptD1(view, hook);
  for (const name of methods)
    Object.defineProperty(db, name, {
      value: (...args: unknown[]) => (wrapped[name] as (...a: unknown[]) => unknown)(...args),
      configurable: true,
      writable: true,
    });
  return () => {
    for (const name of methods) delete (db as unknown as Record<string, unknown>)[name];
  };
}

/**
 * Statements whose SQL matches `query` run on D1, then lose their answer: the caller gets `lost()`
 * instead (an error, or a promise that never settles: the instance that sent it went away). What
 * D1 did is real; what the caller sees is a broken connection. In place, as `interceptD1InPlace`
 * (a Durable Object's parts hold the binding); returns the undo.
 */
export function loseAnswersInPlace(db: D1Database, query: RegExp, lost: () => Promise<never>): () => void {
  const prepare = db.prepare.bind(db);
  Object.defineProperty(db, "prepare", {
    value: (sql: string) => (query.test(sql) ? answerLost(prepare(sql), lost) : prepare(sql)),
    configurable: true,
    writable: true,
  });
  return () => {
    delete (db as unknown as Record<string, unknown>).prepare;
  };
}

function answerLost(statement: D1PreparedStatement, lost: () => Promise<never>): D1PreparedStatement {
  return new Proxy(statement, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "bind") return (...args: unknown[]) => answerLost(target.bind(...args), lost);
      if (STATEMENT_METHODS.has(prop)) {
        return async (...args: unknown[]) => {
          await Reflect.apply(value, target, args);
          return lost();
        };
      }
      return value.bind(target);
    },
  });
}
