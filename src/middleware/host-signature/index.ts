import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { parseSecrets, verifyRequest } from "../../shared/signing.ts";

/** Guards /internal/*: only requests signed by the Node host with the shared secret get through. */
export const hostSignature = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const body = new Uint8Array(await c.req.raw.clone().arrayBuffer());
    const url = new URL(c.req.url);
    const verdict = await verifyRequest(
      parseSecrets(c.env.HOST_SHARED_SECRET),
      c.req.method,
      url.pathname + url.search,
      c.req.raw.headers,
      body,
    );
    if (!verdict.ok) throw new ApiError("unauthorized", `internal route: ${verdict.reason.replaceAll("_", " ")}`);
    await next();
  });
