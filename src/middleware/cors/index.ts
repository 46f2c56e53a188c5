import { cors } from "hono/cors";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";

/**
 * Route families no browser calls: the admin API (its key belongs on an operator's machine, never
 * in a page) and the host's signed routes. They answer no CORS, so a page cannot read them even
 * with a key it should not have.
 */
const SERVER_ONLY_PREFIXES = ["/admin/", "/internal/"];

/**
 * CORS for the origins in CORS_ORIGINS (comma-separated, or `*`), on every tenant route, preflight
 * included. Credentials are never allowed: browsers authenticate with headers or stream tokens.
 * Every response header meant for callers is exposed, so a page reads what a server-side client does.
 */
export const corsForConfiguredOrigins = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    if (SERVER_ONLY_PREFIXES.some((prefix) => c.req.path.startsWith(prefix))) return next();
    const configured = (c.env.CORS_ORIGINS ?? "")
      .split(",")
      .map((o) => o.trim())
      .filter(Boolean);
    if (configured.length === 0) return next();
    const allowAll = configured.includes("*");
    return cors({
      origin: (origin) => (allowAll ? "*" : configured.includes(origin) ? origin : null),
      // The methods the API's routes have (no PUT anywhere).
      allowMethods: ["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
      // Output's server allows X-Requested-With and Accept too: pages whose HTTP client sends them
      // on every call (axios as many frameworks set it up) must pass the preflight here as there.
      allowHeaders: ["Authorization", "Content-Type", "Accept", "X-Requested-With", "Last-Event-ID", "X-Request-Id", "Idempotency-Key"],
      exposeHeaders: [
        "x-request-id",
        "location",
        "retry-after",
        "www-authenticate",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "idempotent-replayed",
        // The published run's id (POST /api/v1/run/{id} and its stream).
        "x-run-id",
        // The unpinned stop/terminate/reset routes' notice of their pinned successors.
        "deprecation",
        "sunset",
        "link",
      ],
      maxAge: 600,
    })(c, next);
  });
