/**
 * BENCH ONLY: the edge Worker with counters, for bench/run-cost.ts. Never deployed: wrangler.toml's
 * `main` is src/index.ts; this entry is used only when `OUTRIDER_EDGE_ENTRY=bench/worker-entry.ts`
 * is set for scripts/dev.ts (the bench sets it for its own stack).
 *
 * It wraps the D1 binding (of the Worker and of the RunStream DO) to count executed statements,
 * counts the host's run-event pushes, and answers `GET /__bench/counters`.
 */
import app from "../src/index.ts";
import { RunStream as BaseRunStream } from "../durable-objects/run-stream.ts";

export { RateLimiter } from "../durable-objects/rate-limiter.ts";

const counters = {
  /** D1 statements executed by the Worker (start path, reads, auth). */
  workerStatements: 0,
  /** D1 statements executed by RunStream DOs (the run pipeline). */
  runStreamStatements: 0,
  /** db.batch calls by RunStream DOs. */
  runStreamBatches: 0,
  /** Host → edge requests carrying run events. */
  runEventPushes: 0,
};
type Counter = "workerStatements" | "runStreamStatements";

const unwrap = new WeakMap<object, D1PreparedStatement>();

function countingStatement(statement: D1PreparedStatement, counter: Counter): D1PreparedStatement {
  const proxy = new Proxy(statement, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "bind") return (...args: unknown[]) => countingStatement(target.bind(...args), counter);
      if (prop === "run" || prop === "first" || prop === "all" || prop === "raw") {
        return (...args: unknown[]) => {
          counters[counter]++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return value.bind(target);
    },
  });
  unwrap.set(proxy, statement);
  return proxy;
}

function countingD1(db: D1Database, counter: Counter): D1Database {
  return new Proxy(db, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (prop === "prepare") return (sql: string) => countingStatement(target.prepare(sql), counter);
      if (prop === "batch") {
        return (statements: D1PreparedStatement[]) => {
          counters[counter] += statements.length;
          if (counter === "runStreamStatements") counters.runStreamBatches++;
          return target.batch(statements.map((s) => unwrap.get(s) ?? s));
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

export class RunStream extends BaseRunStream {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, { ...env, DB: countingD1(env.DB, "runStreamStatements") });
  }
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/__bench/counters") return Response.json(counters);
    if (request.method === "POST" && (url.pathname === "/internal/run-events" || /^\/internal\/runs\/[^/]+\/events$/.test(url.pathname)))
      counters.runEventPushes++;
    return app.fetch!(request as Parameters<NonNullable<typeof app.fetch>>[0], { ...env, DB: countingD1(env.DB, "workerStatements") }, ctx);
  },
} satisfies ExportedHandler<Env>;
