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
import { interceptD1 } from "../test/support/d1-intercept.ts";

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

function countingD1(db: D1Database, counter: Counter): D1Database {
  return interceptD1(db, (call) => {
    if (call.kind === "batch") {
      counters[counter] += call.statements;
      if (counter === "runStreamStatements") counters.runStreamBatches++;
    } else counters[counter]++;
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
