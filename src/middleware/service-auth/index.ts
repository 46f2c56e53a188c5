/**
 * Authentication of the Workflow Runs API (`/api/v1/workflow-runs`), which accepts either:
 *
 * - a **JWT** (`Authorization: Bearer <jwt>`) from the customer's backend, verified with jose:
 *   RS/PS/ES/EdDSA against JWT_JWKS_URL (a JWKS) or else JWT_PUBLIC_KEY (PEM SPKI), HS256 against
 *   JWT_SECRET, with `exp` required and JWT_ISSUER / JWT_AUDIENCE checked when set. The
 *   organization is the JWT_ORG_CLAIM claim (default `org_id`); or
 * - a **trusted internal call**: `Authorization: Bearer <INTERNAL_SERVICE_SECRET>` plus
 *   `X-Organization-Id`. A Worker has no private network, so "private IP" trust becomes
 *   possession of this secret (docs/authentication.md). Several comma-separated values are
 *   accepted so that it can be rotated without downtime, like ADMIN_API_KEY.
 */
import { createMiddleware } from "hono/factory";
import { createRemoteJWKSet, decodeProtectedHeader, importSPKI, jwtVerify, type JWTVerifyGetKey, type JWTPayload } from "jose";
import type { AppEnv } from "../../app-env.ts";
import { ApiError } from "../../errors.ts";
import { matchesSecret } from "../../lib/secret-compare.ts";
import { parseSecrets } from "../../shared/signing.ts";
import { credentialFromHeader } from "../api-key-auth/index.ts";

const ORGANIZATION_ID = /^[A-Za-z0-9_-]{1,64}$/;
const ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"];
const jwksCache = new Map<string, JWTVerifyGetKey>();

const unauthorized = (message: string) =>
  new ApiError("unauthorized", message, undefined, { "www-authenticate": 'Bearer realm="outrider", error="invalid_token"' });

/**
 * Verifies a JWT with the key its algorithm calls for: HS256 only with JWT_SECRET; asymmetric
 * algorithms only with JWT_JWKS_URL (when set) or JWT_PUBLIC_KEY. A key is never used with an
 * algorithm of the other kind, so no algorithm confusion is possible.
 */
export async function verifyJwt(env: Env, token: string): Promise<JWTPayload> {
  const options = {
    issuer: env.JWT_ISSUER || undefined,
    audience: env.JWT_AUDIENCE || undefined,
    requiredClaims: ["exp"],
  };
  const { alg } = decodeProtectedHeader(token);
  if (alg === "HS256") {
    if (!env.JWT_SECRET) throw new Error("HS256 tokens are not accepted (no JWT_SECRET)");
    return (await jwtVerify(token, new TextEncoder().encode(env.JWT_SECRET), { ...options, algorithms: ["HS256"] })).payload;
  }
  if (!alg || !ASYMMETRIC_ALGORITHMS.includes(alg)) throw new Error(`algorithm ${alg} is not accepted`);
  if (env.JWT_JWKS_URL) {
    let jwks = jwksCache.get(env.JWT_JWKS_URL);
    if (!jwks) {
      jwks = createRemoteJWKSet(new URL(env.JWT_JWKS_URL));
      jwksCache.set(env.JWT_JWKS_URL, jwks);
    }
    return (await jwtVerify(token, jwks, { ...options, algorithms: ASYMMETRIC_ALGORITHMS })).payload;
  }
  if (env.JWT_PUBLIC_KEY)
    return (await jwtVerify(token, await importSPKI(env.JWT_PUBLIC_KEY, alg), { ...options, algorithms: [alg] })).payload;
  throw new Error(`algorithm ${alg} needs JWT_JWKS_URL or JWT_PUBLIC_KEY`);
}

/**
 * Organizations seen to exist, per isolate: organizations are never deleted, so a hit needs no
 * D1 read (this runs on every request of the family). Bounded like the API key cache.
 */
const knownOrganizations = new Set<string>();
const KNOWN_ORGANIZATIONS_MAX = 10_000;

/** A token or header naming an organization that does not exist authenticates nobody. */
async function assertOrganizationExists(env: Env, organizationId: string): Promise<void> {
  if (knownOrganizations.has(organizationId)) return;
  const row = await env.DB.prepare("SELECT 1 AS ok FROM organizations WHERE id = ?").bind(organizationId).first();
  if (!row) throw unauthorized(`organization "${organizationId}" does not exist`);
  if (knownOrganizations.size >= KNOWN_ORGANIZATIONS_MAX) knownOrganizations.clear();
  knownOrganizations.add(organizationId);
}

export const serviceAuth = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const credential = credentialFromHeader(c.req.header("authorization"), false);
    if (!credential) throw unauthorized("send a JWT (or the internal service secret) as `Authorization: Bearer <token>`");

    // A comma-separated list, every value accepted (`new,old` while rotating); blank entries are no secret.
    const internalSecrets = parseSecrets(c.env.INTERNAL_SERVICE_SECRET);
    if (internalSecrets.length > 0 && (await matchesSecret(credential, internalSecrets))) {
      const organizationId = c.req.header("x-organization-id") ?? "";
      if (!ORGANIZATION_ID.test(organizationId))
        throw new ApiError("invalid_request", "internal calls name their organization in X-Organization-Id");
      await assertOrganizationExists(c.env, organizationId);
      c.set("auth", { organizationId, apiKeyId: null, scopes: ["*"], rateLimitKey: `internal:${organizationId}` });
      return next();
    }

    let claims: JWTPayload;
    try {
      claims = await verifyJwt(c.env, credential);
    } catch (err) {
      throw unauthorized(`the token is not a valid JWT for this API (${(err as Error).message})`);
    }
    const organizationId = claims[c.env.JWT_ORG_CLAIM || "org_id"];
    if (typeof organizationId !== "string" || !ORGANIZATION_ID.test(organizationId)) {
      throw unauthorized(`the JWT has no organization claim "${c.env.JWT_ORG_CLAIM || "org_id"}"`);
    }
    await assertOrganizationExists(c.env, organizationId);
    c.set("auth", { organizationId, apiKeyId: null, scopes: ["*"], rateLimitKey: `jwt:${organizationId}:${claims.sub ?? ""}` });
    await next();
  });
