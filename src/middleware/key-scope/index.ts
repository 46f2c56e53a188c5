/**
 * What an API key may do. A key holds scopes (set when the admin API creates it; `["*"]`, every
 * scope, by default), and each API-key route needs one of them, named in ROUTE_SCOPES. A key
 * without it gets 403 `insufficient_scope` with an RFC 6750 challenge naming the scope.
 *
 * The check runs after authentication and the rate limit, before the route reads its body or the
 * run, so a refused call learns nothing about runs. It looks up the routes Hono itself matched
 * (not a second parse of the path), and every matched handler's scope is needed; a handler
 * missing from ROUTE_SCOPES is refused to every key but `*` ones, so a new route is closed until
 * it is listed. test/edge/key-scopes.test.ts walks every documented API-key route.
 */
import { createMiddleware } from "hono/factory";
import { matchedRoutes } from "hono/route";
import type { AppEnv } from "../../app-env.ts";
import { ApiError, insufficientScopeChallenge } from "../../errors.ts";

/** The scopes a key may be given, besides `*` (all of them, and any added later). */
export const KEY_SCOPES = ["runs:read", "runs:start", "runs:control"] as const;
export type KeyScope = (typeof KEY_SCOPES)[number];
export const EVERY_SCOPE = "*";

/**
 * The one scope of a run-scoped stream token (never a key's): the history streams of its run. The
 * stream-token auth accepts a token on those routes only; this is the second fence.
 */
export const STREAM_TOKEN_SCOPE = "runs:stream";
const STREAM_TOKEN_ROUTES: ReadonlySet<string> = new Set([
  "GET /workflow/:id/history/stream",
  "GET /workflow/:id/runs/:rid/history/stream",
]);

/** What each scope allows, for the docs (OpenAPI, admin API). */
export const KEY_SCOPE_MEANINGS: Record<KeyScope, string> = {
  "runs:read": "read the catalog, runs, statuses, results, inputs, histories, streams and trace logs; query a run; mint a stream token",
  "runs:start": "start runs (/workflow/start, /workflow/run, /api/v1/run/{workflowId} and its stream)",
  "runs:control": "stop, terminate and reset runs; send them signals, updates and feedback",
};

const READ_ROUTES = [
  "GET /workflow/catalog",
  "GET /workflow/catalog/:id",
  "GET /workflow/runs",
  "GET /workflow/:id/status",
  "GET /workflow/:id/runs/:rid/status",
  "GET /workflow/:id/result",
  "GET /workflow/:id/runs/:rid/result",
  "GET /workflow/:id/input",
  "GET /workflow/:id/runs/:rid/input",
  "GET /workflow/:id/history",
  "GET /workflow/:id/runs/:rid/history",
  "GET /workflow/:id/history/stream",
  "GET /workflow/:id/runs/:rid/history/stream",
  "GET /workflow/:id/trace-log",
  "GET /workflow/:id/runs/:rid/trace-log",
  "GET /workflow/:id/trace-attributes",
  "GET /workflow/:id/runs/:rid/trace-attributes",
  // A Temporal query reads the run's state and changes nothing.
  "POST /workflow/:id/query/:name",
  // A stream token reads one run's streams, nothing more.
  "POST /workflow/:id/stream-token",
] as const;

const START_ROUTES = [
  "POST /workflow/start",
  "POST /workflow/run",
  "POST /api/v1/run/:workflowId",
  "POST /api/v1/run/:workflowId/stream",
] as const;

const CONTROL_ROUTES = [
  "PATCH /workflow/:id/stop",
  "PATCH /workflow/:id/runs/:rid/stop",
  "POST /workflow/:id/terminate",
  "POST /workflow/:id/runs/:rid/terminate",
  "POST /workflow/:id/reset",
  "POST /workflow/:id/runs/:rid/reset",
  "POST /workflow/:id/signal/:name",
  "POST /workflow/:id/update/:name",
  "POST /workflow/:id/feedback",
] as const;

/** `"<METHOD> <Hono path>"` of each API-key route → the scope it needs. */
const ROUTE_SCOPES: ReadonlyMap<string, KeyScope> = new Map([
  ...READ_ROUTES.map((route) => [route, "runs:read"] as const),
  ...START_ROUTES.map((route) => [route, "runs:start"] as const),
  ...CONTROL_ROUTES.map((route) => [route, "runs:control"] as const),
]);

/** The scope a route needs (its method and Hono path), or undefined when it is not an API-key route of ROUTE_SCOPES. */
export function routeScope(method: string, path: string): KeyScope | undefined {
  return ROUTE_SCOPES.get(`${method.toUpperCase()} ${path}`);
}

/** Does a key with these scopes hold `scope`? */
const holdsScope = (scopes: readonly string[], scope: string) => scopes.includes(EVERY_SCOPE) || scopes.includes(scope);

/** Refuses (403) a request whose key lacks the scope of a route it matched. Mount after authentication. */
export const requireKeyScope = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const { scopes } = c.get("auth");
    if (scopes.includes(EVERY_SCOPE)) return next();
    // Middleware (`app.use`) match as ALL; every other matched route is a handler that may answer.
    const handlers = matchedRoutes(c).filter((route) => route.method !== "ALL");
    for (const handler of handlers) {
      const needed = routeScope(handler.method, handler.path);
      if (needed && holdsScope(scopes, needed)) continue;
      if (scopes.includes(STREAM_TOKEN_SCOPE) && STREAM_TOKEN_ROUTES.has(`${handler.method} ${handler.path}`)) continue;
      const scope = needed ?? EVERY_SCOPE;
      throw new ApiError(
        "insufficient_scope",
        `this API key lacks the scope "${scope}" that ${c.req.method} ${handler.path} needs (it has: ${scopes.join(", ") || "none"}); use a key created with it`,
        undefined,
        { "www-authenticate": insufficientScopeChallenge(scope) },
      );
    }
    await next();
  });
