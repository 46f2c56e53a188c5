/**
 * Operator authentication for the admin API (`/admin/v1/...`): `Authorization: Bearer <key>`
 * where the key is ADMIN_API_KEY (a Worker secret). Several comma-separated keys are accepted so
 * that the key can be rotated without downtime. Without ADMIN_API_KEY the admin API is off.
 */
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { credentialFromHeader } from "../api-key-auth/index.ts";

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}

export const adminAuth = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const configured = (c.env.ADMIN_API_KEY ?? "").split(",").map((k) => k.trim()).filter(Boolean);
    const credential = credentialFromHeader(c.req.header("authorization"), false);
    if (configured.length === 0 || !credential) {
      throw new ApiError("unauthorized", "the admin API needs `Authorization: Bearer <ADMIN_API_KEY>`", undefined, {
        "www-authenticate": 'Bearer realm="outrider-admin"',
      });
    }
    // Compare digests (equal length) in constant time, against every configured key.
    const given = await digest(credential);
    let ok = false;
    for (const key of configured) if (crypto.subtle.timingSafeEqual(given, await digest(key))) ok = true;
    if (!ok) throw new ApiError("unauthorized", "the admin key is not valid", undefined, { "www-authenticate": 'Bearer realm="outrider-admin", error="invalid_token"' });
    await next();
  });
