/**
 * Authentication for the Workflow API: an API key, or, on stream routes only, a run-scoped
 * `?token=` (what browsers' EventSource can send). A token authenticates exactly one run's
 * streams; the route checks the scope.
 */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { singleQueryValue } from "../query/index.ts";
import { STREAM_TOKEN_REFUSED, streamTokenAuthContext, verifyLiveStreamToken } from "../../stream-tokens.ts";
import { apiKeyAuth } from "../api-key-auth/index.ts";

const STREAM_ROUTE = /^\/workflow\/[^/]+(\/runs\/[^/]+)?\/history\/stream$/;
/** The stream is a GET (HEAD answered alike); a token authenticates no other method on its path. */
const STREAM_METHODS = new Set(["GET", "HEAD"]);

export const apiKeyOrStreamToken = () => {
  const keyAuth = apiKeyAuth({ allowBasic: true });
  return createMiddleware<AppEnv>(async (c, next) => {
    const token =
      !c.req.header("authorization") && STREAM_METHODS.has(c.req.method) && STREAM_ROUTE.test(c.req.path)
        ? singleQueryValue(c, "token")
        : undefined;
    if (token) {
      const claims = await verifyLiveStreamToken(c.env.DB, c.env.STREAM_TOKEN_SECRET, token);
      if (!claims) throw new ApiError("unauthorized", STREAM_TOKEN_REFUSED);
      c.set("auth", streamTokenAuthContext(claims));
      return next();
    }
    return keyAuth(c, next);
  });
};
