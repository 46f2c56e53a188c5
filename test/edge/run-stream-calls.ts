/**
 * A RunStream namespace binding whose stubs' calls (RPC methods and `fetch`) go through `around`,
 * for tests that count, or break, the Worker's calls into the home region. The DOs keep their own
 * bindings: only the calls made with this one are seen.
 */
export function aroundRunStreamCalls(ns: Env["RUN_STREAM"], around: (method: string, call: () => unknown) => unknown): Env["RUN_STREAM"] {
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
