/**
 * A Durable Object namespace binding (RunStream, RateLimiter) whose stubs' calls (RPC methods and
 * `fetch`) go through `around`, for tests that count, or break, the Worker's calls into the home
 * region or to a key's RateLimiter. The DOs keep their own bindings: only the calls made with this
 * one are seen.
 */
export function aroundDurableObjectCalls<N extends Env["RUN_STREAM"] | Env["RATE_LIMITER"]>(
  ns: N,
  around: (method: string, call: () => unknown) => unknown,
): N {
  return new Proxy(ns, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop !== "get" && prop !== "getByName") return value.bind(target);
      return (...args: unknown[]) => {
        const stub = Reflect.apply(value, target, args) as object;
        return new Proxy(stub, {
          get(s, p) {
            const v = Reflect.get(s, p, s);
            if (typeof v !== "function" || p === "then") return v;
            return (...a: unknown[]) => around(String(p), () => Reflect.apply(v, s, a));
          },
        });
      };
    },
  });
}
