/**
 * Operator authentication for the admin API (`/admin/v1/...`): `Authorization: Bearer <key>`
 * where the key is ADMIN_API_KEY (a Worker secret). Several comma-separated keys are accepted so
 * that the key can be rotated without downtime. Without ADMIN_API_KEY the admin API is off; with
 * a value under MIN_SECRET_LENGTH characters it answers nothing but a logged 500 (the key opens
 * every organization's keys and credits, and the admin API is on the public Worker with no limit
 * on attempts: a short key could be found by trying).
 */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import { ApiError, misconfigured } from "../../errors.ts";
import { matchesSecret } from "../../lib/secret-compare.ts";
import { parseSecrets, secretsProblem } from "../../shared/signing.ts";
import { credentialFromHeader } from "../api-key-auth/index.ts";

export const adminAuth = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const configured = parseSecrets(c.env.ADMIN_API_KEY);
    const credential = credentialFromHeader(c.req.header("authorization"), false);
    if (configured.length === 0 || !credential) {
      throw new ApiError("unauthorized", "the admin API needs `Authorization: Bearer <ADMIN_API_KEY>`", undefined, {
        "www-authenticate": 'Bearer realm="outrider-admin"',
      });
    }
    const problem = secretsProblem("ADMIN_API_KEY", configured);
    if (problem)
      throw misconfigured(c.get("requestId"), `admin API: ${problem}`, "the admin API is off until the operator fixes ADMIN_API_KEY");
    if (!(await matchesSecret(credential, configured)))
      throw new ApiError("unauthorized", "the admin key is not valid", undefined, {
        "www-authenticate": 'Bearer realm="outrider-admin", error="invalid_token"',
      });
    await next();
  });
