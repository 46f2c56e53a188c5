import { cors } from "hono/cors";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";

/**
 * CORS for the origins in CORS_ORIGINS (comma-separated, or `*`), on every route, preflight
 * included. Credentials are never allowed: browsers authenticate with headers or stream tokens.
 */
export const corsForConfiguredOrigins = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const configured = (c.env.CORS_ORIGINS ?? "")
      .split(",")
      .map((o) => o.trim())
      .filter(Boolean);
    if (configured.length === 0) return next();
    const allowAll = configured.includes("*");
    return cors({
      origin: (origin) => (allowAll ? "*" : configured.includes(origin) ? origin : null),
      allowMethods: ["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
      allowHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "X-Request-Id", "Idempotency-Key"],
      exposeHeaders: [
        "x-request-id",
        "location",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "idempotent-replayed",
      ],
      maxAge: 600,
    })(c, next);
  });
