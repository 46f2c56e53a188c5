/**
 * `X-Content-Type-Options: nosniff` on every answer the Worker gives (JSON, event streams, errors):
 * a browser then takes each answer as the type it says, never as HTML it guessed from the bytes.
 * Several answers quote what the caller sent (a path, an id, a name), cut short but not escaped
 * for HTML. The run viewer's page sets its own headers (src/routes/page-headers.ts).
 */
import { createMiddleware } from "hono/factory";

export const noSniff = () =>
  createMiddleware(async (c, next) => {
    await next();
    c.res.headers.set("x-content-type-options", "nosniff");
  });
