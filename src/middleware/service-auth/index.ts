/**
 * Authentication of the Workflow Runs API (`/api/v1/workflow-runs`), which accepts either:
 *
 * - a **JWT** (`Authorization: Bearer <jwt>`) from the customer's backend, verified with jose:
 *   RS/PS/ES/EdDSA against JWT_JWKS_URL (a JWKS, which needs JWT_AUDIENCE) or else JWT_PUBLIC_KEY
 *   (PEM SPKI), HS256 against JWT_SECRET (and JWT_SECRET_PREVIOUS while rotating; each at least
 *   32 characters, or HS256 tokens are a 500), with
 *   `exp` required and JWT_ISSUER / JWT_AUDIENCE checked when set. The organization is the
 *   JWT_ORG_CLAIM claim (default `org_id`); or
 * - a **trusted internal call**: `Authorization: Bearer <INTERNAL_SERVICE_SECRET>` plus
 *   `X-Organization-Id`. A Worker has no private network, so "private IP" trust becomes
 *   possession of this secret (docs/authentication.md). Several comma-separated values are
 *   accepted so that it can be rotated without downtime, like ADMIN_API_KEY; each at least
 *   MIN_SECRET_LENGTH characters, or internal calls are a logged 500.
 */
import { createMiddleware } from "hono/factory";
import {
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  importSPKI,
  jwtVerify,
  type JWTVerifyGetKey,
  type JWTPayload,
  type JWTVerifyOptions,
} from "jose";
import type { AppEnv } from "../../app-env.ts";
import { ApiError, INVALID_TOKEN_CHALLENGE, misconfigured } from "../../errors.ts";
import { matchesSecret } from "../../lib/secret-compare.ts";
import { organizationStatus, organizationSuspended } from "../../lib/organization-status.ts";
import { parseSecrets, secretsProblem } from "../../shared/signing.ts";
import { credentialFromHeader } from "../api-key-auth/index.ts";

const ORGANIZATION_ID = /^[A-Za-z0-9_-]{1,64}$/;
const ASYMMETRIC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"];
const jwksCache = new Map<string, JWTVerifyGetKey>();
/**
 * How long a JWKS that failed is not fetched again (and the Retry-After of the 503 meanwhile).
 * jose keeps a key set it got, but remembers nothing of a fetch that failed (and on Workers does
 * not share one fetch between requests): without this pause, every request while the identity
 * provider is down would make a fetch of its own, before any rate limit.
 */
const JWKS_RETRY_AFTER_SECONDS = 5;

/**
 * Our side cannot check any token: the key set did not come (network, timeout, a 5xx). Not the
 * caller's credentials, so not a 401; a request after `retryAfterSeconds` fetches it again.
 */
const keysUnavailable = (why: string, retryAfterSeconds = JWKS_RETRY_AFTER_SECONDS) =>
  new ApiError(
    "jwt_keys_unavailable",
    `the keys that verify JWTs (JWT_JWKS_URL) could not be fetched (${why}); try again shortly`,
    undefined,
    {
      "retry-after": String(retryAfterSeconds),
    },
  );

/**
 * The configured keys are unusable (a JWKS URL that answers 4xx or no key set, a PEM that is not a
 * public key, a JWT_SECRET too short to be safe): the operator's to fix.
 */
const keysInvalid = (setting: "JWT_JWKS_URL" | "JWT_PUBLIC_KEY" | "JWT_SECRET" | "JWT_SECRET_PREVIOUS", why: string) =>
  new ApiError("jwt_keys_invalid", `the keys that verify JWTs (${setting}) are unusable (${why}); the operator must fix ${setting}`);

/** The JWKS fetch, with its failures sorted into ours (ApiError) before jose sees them. */
const fetchJwks = async (url: string, init: RequestInit): Promise<Response> => {
  const res = await fetch(url, init).catch((err: Error) => {
    throw keysUnavailable(err.name === "TimeoutError" ? "timed out" : "unreachable");
  });
  if (res.status >= 500 || res.status === 429 || res.status === 408) throw keysUnavailable(`HTTP ${res.status}`);
  if (res.status !== 200) throw keysInvalid("JWT_JWKS_URL", `HTTP ${res.status}`);
  // A set with no keys verifies no token: the operator's to fix, not each caller's 401.
  const text = await res.text();
  const keys = (JSON.parse(text || "null") as { keys?: unknown } | null)?.keys;
  if (Array.isArray(keys) && keys.length === 0) throw keysInvalid("JWT_JWKS_URL", "the key set has no keys");
  return new Response(text, { status: res.status, headers: res.headers });
};

/** The remote key set of JWT_JWKS_URL (cached by jose), whose failures are ours, not the token's. */
function remoteKeys(url: string): JWTVerifyGetKey {
  let jwks = jwksCache.get(url);
  if (!jwks) {
    const remote = createRemoteJWKSet(new URL(url), { [customFetch]: fetchJwks });
    /** Until when (ms) the JWKS is not asked again after a failed fetch, and that failure. */
    let pause: { until: number; failure: ApiError } | null = null;
    jwks = async (header, token) => {
      if (pause && Date.now() < pause.until) {
        const { failure } = pause;
        if (failure.code !== "jwt_keys_unavailable") throw failure;
        throw keysUnavailable("it failed moments ago", Math.max(1, Math.ceil((pause.until - Date.now()) / 1000)));
      }
      try {
        return await remote(header, token);
      } catch (err) {
        const failure = ourFailure(err);
        if (!failure) throw err;
        pause = { until: Date.now() + JWKS_RETRY_AFTER_SECONDS * 1000, failure };
        throw failure;
      }
    };
    jwksCache.set(url, jwks);
  }
  return jwks;
}

/**
 * A failure of the key set (ours: 503 or 500), or null for the token's own (no key for its
 * `kid`/`alg`, or several: 401).
 */
function ourFailure(err: unknown): ApiError | null {
  if (err instanceof ApiError) return err;
  if (err instanceof SyntaxError) return keysInvalid("JWT_JWKS_URL", "not a JSON Web Key Set");
  // Not jose's own: WebCrypto refusing to import a key of the set (an RSA modulus too short).
  if (!(err instanceof errors.JOSEError)) return keysInvalid("JWT_JWKS_URL", "a key in the set cannot be imported");
  if (err instanceof errors.JWKSTimeout) return keysUnavailable("timed out");
  if (err instanceof errors.JWKSInvalid || err.code === "ERR_JOSE_GENERIC") return keysInvalid("JWT_JWKS_URL", "not a JSON Web Key Set");
  return null;
}

/**
 * Refuses, before any key is fetched, a token no key could make valid: malformed, or without an
 * `exp` in the future (what jwtVerify checks after the signature). So while a JWKS is down only a
 * token a retry could verify is told to retry (503); the rest are 401 at once, as they would be
 * with the keys in hand. The claims are not trusted here, only used to refuse.
 */
function assertCouldBeValid(token: string): void {
  const { exp } = decodeJwt(token);
  if (typeof exp !== "number") throw new Error('the token has no "exp" claim');
  if (exp <= Math.floor(Date.now() / 1000)) throw new Error('"exp" claim timestamp check failed');
}

/**
 * JWT_PUBLIC_KEY for the token's algorithm. A PEM that takes no algorithm at all is a broken
 * setting (500); one that takes others is a token signed the wrong way (401).
 */
async function publicKeyFor(pem: string, alg: string): Promise<CryptoKey> {
  try {
    return await importSPKI(pem, alg);
  } catch {
    for (const other of ASYMMETRIC_ALGORITHMS) {
      if (other === alg) continue;
      if (
        await importSPKI(pem, other).then(
          () => true,
          () => false,
        )
      )
        throw new Error(`JWT_PUBLIC_KEY does not take ${alg}`);
    }
    throw keysInvalid("JWT_PUBLIC_KEY", "not a PEM public key");
  }
}

/**
 * The optional second HS256 key of a rotation: tokens the backend signed with the old key before it
 * switched still verify until they expire (docs/deploy.md#rotating-the-jwt-secret). Not declared in
 * wrangler.toml's required secrets, so not in the generated Env.
 */
type RotationEnv = Env & { JWT_SECRET_PREVIOUS?: string };

/**
 * HS256: JWT_SECRET, then JWT_SECRET_PREVIOUS when set and only for a signature JWT_SECRET did not
 * verify (an expired token or a wrong audience is refused whichever key signed it). Each is one
 * value, commas and all (neither is a list), of at least MIN_SECRET_LENGTH characters: one captured
 * token is enough to test guesses at a key offline, and a key found signs for any organization, so
 * a short one verifies nothing (the operator's to fix, logged; never the value).
 */
async function verifyHs256(env: RotationEnv, token: string, options: JWTVerifyOptions): Promise<JWTPayload> {
  if (!env.JWT_SECRET) throw new Error("HS256 tokens are not accepted (no JWT_SECRET)");
  const keys: Array<["JWT_SECRET" | "JWT_SECRET_PREVIOUS", string]> = [["JWT_SECRET", env.JWT_SECRET]];
  if (env.JWT_SECRET_PREVIOUS) keys.push(["JWT_SECRET_PREVIOUS", env.JWT_SECRET_PREVIOUS]);
  for (const [name, value] of keys) {
    const problem = secretsProblem(name, [value]);
    if (problem) {
      console.error(JSON.stringify({ level: "error", message: `Workflow Runs API: HS256 tokens are not verified: ${problem}` }));
      throw keysInvalid(name, "refused by the edge, see its logs");
    }
  }
  for (const [index, [, value]] of keys.entries()) {
    try {
      return (await jwtVerify(token, new TextEncoder().encode(value), { ...options, algorithms: ["HS256"] })).payload;
    } catch (err) {
      if (!(err instanceof errors.JWSSignatureVerificationFailed) || index === keys.length - 1) throw err;
    }
  }
  throw new Error("unreachable: the last key's failure is thrown");
}

/** A JWT's compact form: three dot-separated parts (the internal secret is told apart from one by that). */
const looksLikeJwt = (credential: string) => credential.split(".").length === 3;

const unauthorized = (message: string) => new ApiError("unauthorized", message, undefined, { "www-authenticate": INVALID_TOKEN_CHALLENGE });

/**
 * Verifies a JWT with the key its algorithm calls for: HS256 only with JWT_SECRET (or
 * JWT_SECRET_PREVIOUS while rotating; verifyHs256); asymmetric algorithms only with JWT_JWKS_URL (when set) or
 * JWT_PUBLIC_KEY. A key is never used with an algorithm of the other kind, so no algorithm
 * confusion is possible.
 */
export async function verifyJwt(env: Env, token: string): Promise<JWTPayload> {
  const options = {
    issuer: env.JWT_ISSUER || undefined,
    audience: env.JWT_AUDIENCE || undefined,
    requiredClaims: ["exp"],
  };
  const { alg } = decodeProtectedHeader(token);
  if (alg === "HS256") return verifyHs256(env, token, options);
  if (!alg || !ASYMMETRIC_ALGORITHMS.includes(alg)) throw new Error(`algorithm ${alg} is not accepted`);
  if (env.JWT_JWKS_URL) {
    // An identity provider's keys sign tokens for every application it serves: without an audience,
    // another application's token that carries an org claim would pass as ours. Fail closed.
    if (!env.JWT_AUDIENCE) throw keysInvalid("JWT_JWKS_URL", "JWT_AUDIENCE must be set with it");
    assertCouldBeValid(token);
    const jwksOptions = { ...options, algorithms: ASYMMETRIC_ALGORITHMS };
    try {
      return (await jwtVerify(token, remoteKeys(env.JWT_JWKS_URL), jwksOptions)).payload;
    } catch (err) {
      // A token without a `kid` while the set has two keys of its kind (a rotation): jose leaves
      // it to us to try each (its documented way); the key that signed it verifies it.
      if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
      for await (const key of err) {
        try {
          return (await jwtVerify(token, key, jwksOptions)).payload;
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw new errors.JWSSignatureVerificationFailed();
    }
  }
  if (env.JWT_PUBLIC_KEY)
    return (await jwtVerify(token, await publicKeyFor(env.JWT_PUBLIC_KEY, alg), { ...options, algorithms: [alg] })).payload;
  throw new Error(`algorithm ${alg} needs JWT_JWKS_URL or JWT_PUBLIC_KEY`);
}

/**
 * A token or header naming an organization that does not exist authenticates nobody (401); one an
 * operator suspended is 403. Both from the isolate's organization cache (lib/organization-status.ts),
 * as this runs on every request of the family.
 */
async function assertOrganizationActive(env: Env, organizationId: string): Promise<void> {
  const status = await organizationStatus(env.DB, organizationId);
  if (!status) throw unauthorized(`organization "${organizationId}" does not exist`);
  if (status.suspended) throw organizationSuspended(organizationId);
}

export const serviceAuth = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const credential = credentialFromHeader(c.req.header("authorization"), false);
    if (!credential) throw unauthorized("send a JWT (or the internal service secret) as `Authorization: Bearer <token>`");

    // A comma-separated list, every value accepted (`new,old` while rotating); blank entries are no secret.
    const internalSecrets = parseSecrets(c.env.INTERNAL_SERVICE_SECRET);
    const internalProblem = internalSecrets.length > 0 ? secretsProblem("INTERNAL_SERVICE_SECRET", internalSecrets) : undefined;
    if (internalProblem && !looksLikeJwt(credential)) {
      // A value short enough to be found by trying (it acts for any organization) is no secret:
      // internal calls are off until the operator fixes it (logged, never the value); JWTs still work.
      throw misconfigured(
        c.get("requestId"),
        `Workflow Runs API: ${internalProblem}`,
        "internal calls are off until the operator fixes INTERNAL_SERVICE_SECRET",
      );
    }
    if (!internalProblem && internalSecrets.length > 0 && (await matchesSecret(credential, internalSecrets))) {
      const organizationId = c.req.header("x-organization-id") ?? "";
      if (!ORGANIZATION_ID.test(organizationId))
        throw new ApiError("invalid_request", "internal calls name their organization in X-Organization-Id");
      await assertOrganizationActive(c.env, organizationId);
      c.set("auth", { organizationId, apiKeyId: null, scopes: ["*"], rateLimitKey: `internal:${organizationId}` });
      return next();
    }

    let claims: JWTPayload;
    try {
      claims = await verifyJwt(c.env, credential);
    } catch (err) {
      // Our keys failing (503/500) is not the caller's credentials failing (401).
      if (err instanceof ApiError) throw err;
      throw unauthorized(`the token is not a valid JWT for this API (${(err as Error).message})`);
    }
    const organizationId = claims[c.env.JWT_ORG_CLAIM || "org_id"];
    if (typeof organizationId !== "string" || !ORGANIZATION_ID.test(organizationId)) {
      throw unauthorized(`the JWT has no organization claim "${c.env.JWT_ORG_CLAIM || "org_id"}"`);
    }
    // `sub` names the caller's rate-limit bucket: an object there would share "[object Object]"
    // with every other such token (or throw turning into a string), so only a string is taken.
    if (claims.sub !== undefined && typeof claims.sub !== "string") throw unauthorized('the JWT\'s "sub" claim is not a string');
    await assertOrganizationActive(c.env, organizationId);
    c.set("auth", { organizationId, apiKeyId: null, scopes: ["*"], rateLimitKey: `jwt:${organizationId}:${claims.sub ?? ""}` });
    await next();
  });
