import type { App } from "../../app-env.ts";
import { insertApiKey, listApiKeys, revokeApiKey } from "../../db/api-keys.ts";
import type { ApiKey } from "../../db/schema.ts";
import { ApiError, quotedId } from "../../errors.ts";
import { API_KEY_CACHE_TTL_MS } from "../../middleware/api-key-auth/index.ts";
import { readJson } from "../../middleware/json-body/index.ts";
import { EVERY_SCOPE, KEY_SCOPES } from "../../middleware/key-scope/index.ts";
import { generateApiKey, sha256Hex } from "../../shared/api-keys.ts";
import { organizationOrThrow, pageQueryOrThrow } from "./organizations.ts";
import { ADMIN_ID_PATTERN, apiKeysQuery, createApiKeyBody } from "./schemas.ts";

/** A key as listings show it: never its secret (only its hash is stored anyway). */
function apiKeyView(key: ApiKey) {
  return {
    id: key.id,
    organizationId: key.organizationId,
    name: key.name,
    prefix: `${key.prefix}_${key.id}_`,
    rateLimitPerMinute: key.rateLimitPerMinute,
    scopes: key.scopes,
    createdAt: key.createdAt,
    revokedAt: key.revokedAt,
  };
}

/** The scopes to store: each once, in KEY_SCOPES order; `*` alone when it is asked for (it holds every other). */
function keyScopes(asked: string[] | undefined): string[] {
  if (!asked || asked.includes(EVERY_SCOPE)) return [EVERY_SCOPE];
  return KEY_SCOPES.filter((scope) => asked.includes(scope));
}

export function registerApiKeys(app: App) {
  app.post("/admin/v1/organizations/:orgId/api-keys", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const body = await readJson(c, createApiKeyBody);
    const generated = generateApiKey();
    const row = await insertApiKey(c.env.DB, {
      id: generated.id,
      organizationId: org.id,
      prefix: generated.prefix,
      secretSha256: await sha256Hex(generated.secret),
      name: body.name,
      rateLimitPerMinute: body.rateLimitPerMinute ?? null,
      scopes: keyScopes(body.scopes),
    });
    // The only time the whole key is ever shown.
    return c.json({ ...apiKeyView(row), key: generated.key }, 201);
  });

  /** Newest first, a page at a time: `before` = the previous page's `next` (null on the last page). */
  app.get("/admin/v1/organizations/:orgId/api-keys", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const { limit, before } = pageQueryOrThrow(c, apiKeysQuery);
    const { page, next } = await listApiKeys(c.env.DB, org.id, limit, before);
    return c.json({ apiKeys: page.map(apiKeyView), next });
  });

  app.delete("/admin/v1/organizations/:orgId/api-keys/:keyId", async (c) => {
    const org = await organizationOrThrow(c.env, c.req.param("orgId"));
    const keyId = c.req.param("keyId");
    const row = ADMIN_ID_PATTERN.test(keyId) ? await revokeApiKey(c.env.DB, org.id, keyId) : null;
    if (!row) throw new ApiError("api_key_not_found", `organization ${org.id} has no API key ${quotedId(keyId)}`);
    // Edge isolates cache verified keys; say how long a revoked key may still be accepted.
    return c.json({ ...apiKeyView(row), revocationEffectiveWithinMs: API_KEY_CACHE_TTL_MS });
  });
}
