/**
 * BENCH ONLY: the edge Worker with a fixed delay on every call it makes into the home region.
 *
 * In production the Worker runs next to the caller while D1's primary, the RunStream DOs and the
 * Node host sit in one home region. On one machine those calls cost ~nothing, so the number of
 * sequential round trips a route makes is invisible. This entry (run from the wrangler config that
 * bench/geography.ts generates from wrangler.toml; never deployed) wraps the real app's bindings so that each call from the Worker into D1, the
 * RunStream namespace and the host waits `x-bench-home-delay-ms` first (the rate limiter DO is
 * left alone: it lives where its key is used). The Durable Objects themselves get the runtime's
 * own env, so calls made inside the home region are not delayed.
 */
import app from "../../src/index.ts";
import { interceptD1 } from "../../test/support/d1-intercept.ts";

export { RateLimiter, RunStream } from "../../src/index.ts";

const BENCH_DELAY_HEADER = "x-bench-home-delay-ms";
/** Host calls from the Worker go to this origin; the patched fetch below delays and forwards them. */
const DELAYED_HOST_ORIGIN = "http://home-region.bench.invalid";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// Set per request from the real env; the bench sends one request at a time with a given delay.
let realHostUrl = "";
let hostDelayMs = 0;

const realFetch = globalThis.fetch;
globalThis.fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
  const url = input instanceof Request ? input.url : String(input);
  if (url.startsWith(DELAYED_HOST_ORIGIN)) {
    await sleep(hostDelayMs);
    const target = new URL(url.slice(DELAYED_HOST_ORIGIN.length), realHostUrl).toString();
    return input instanceof Request ? realFetch(new Request(target, input), init) : realFetch(target, init);
  }
  return realFetch(input, init);
}) as typeof fetch;

/** D1's primary, delayed. A read-replica session (withSession) is served near the Worker in production
 * (docs/architecture.md, placement): not a home-region call, so it is left as it is. */
const delayedD1 = (db: D1Database, delayMs: number) => interceptD1(db, () => sleep(delayMs));

function delayedStub<T extends object>(stub: T, delayMs: number): T {
  return new Proxy(stub, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function" || prop === "then") return value;
      // (Reflect.apply: on an RPC stub, even `.apply` would be taken for a remote method.)
      return async (...args: unknown[]) => {
        await sleep(delayMs);
        return Reflect.apply(value as (...a: unknown[]) => unknown, target, args);
      };
    },
  });
}

function delayedNamespace<N extends object>(ns: N, delayMs: number): N {
  return new Proxy(ns, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "get" || prop === "getByName") {
        return (...args: unknown[]) => delayedStub((value as (...a: unknown[]) => object).apply(target, args), delayMs);
      }
      return value.bind(target);
    },
  });
}

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext) {
    const delayMs = Math.max(0, Number(request.headers.get(BENCH_DELAY_HEADER)) || 0);
    if (delayMs === 0) return app.fetch(request, env, ctx);
    realHostUrl = env.HOST_URL;
    hostDelayMs = delayMs;
    const headers = new Headers(request.headers);
    headers.delete(BENCH_DELAY_HEADER);
    const delayedEnv: Env = {
      ...env,
      DB: delayedD1(env.DB, delayMs),
      RUN_STREAM: delayedNamespace(env.RUN_STREAM, delayMs),
      HOST_URL: DELAYED_HOST_ORIGIN,
    };
    return app.fetch(new Request(request, { headers }), delayedEnv, ctx);
  },
} satisfies ExportedHandler<Env>;
