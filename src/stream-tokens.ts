/**
 * Run-scoped stream tokens: `EventSource` cannot send an Authorization header, so start and run
 * responses carry a short-lived token that lets a browser open that one run's stream with
 * `?token=`. HS256 JWTs (jose), signed with STREAM_TOKEN_SECRET.
 */
import { SignJWT, jwtVerify } from "jose";
import type { AuthContext } from "./app-env.ts";
import { ApiError } from "./errors.ts";
import { liveApiKey } from "./middleware/api-key-auth/index.ts";
import { refuseSuspendedOrganization } from "./lib/organization-status.ts";
import { STREAM_TOKEN_SCOPE } from "./middleware/key-scope/index.ts";
import { parseSecrets, secretsProblem } from "./shared/signing.ts";

/** How long a stream token is valid. EventSource reconnects reuse the URL, so not too short. */
export const STREAM_TOKEN_TTL_SECONDS = 15 * 60;
/**
 * How long a chain of renewed tokens lasts, from the first token an API key minted: a stream hands
 * its client a fresh token as it opens and every 5 minutes (sse/token-renewal.ts), so without a
 * bound a token that leaked once could be exchanged for fresh ones for ever, only stopped by
 * revoking its key. Past this, the client mints a new token with its API key.
 */
export const STREAM_TOKEN_CHAIN_MAX_SECONDS = 24 * 60 * 60;
const AUDIENCE = "outrider:run-stream";
const ISSUER = "outrider";

const encoder = new TextEncoder();

export interface StreamTokenClaims {
  organizationId: string;
  workflowId: string;
  /**
   * The API key that minted it, checked again on every connect (the key's 30 s cache), so a token
   * stops opening streams once its key is revoked, as the key does. Required: a token without one
   * (minted before the claim existed) is refused, as it could not be revoked.
   */
  apiKeyId: string;
  /** When the API key minted the first token of this token's chain (Unix seconds); absent: this one's own. */
  chainStartedAt?: number;
}

/** What a stream token needs to open streams and cannot be minted without: an API key. */
export const MINTING_NEEDS_API_KEY = "minting a stream token needs an API key";

/** The claims of a token that the request's API key mints for one of its organization's runs. */
export function mintingClaims(auth: AuthContext, workflowId: string): StreamTokenClaims {
  // The Workflow API's routes take API keys only; a stream token cannot mint another.
  if (!auth.apiKeyId) throw new ApiError("unauthorized", MINTING_NEEDS_API_KEY);
  return { organizationId: auth.organizationId, workflowId, apiKeyId: auth.apiKeyId };
}

/**
 * The values of STREAM_TOKEN_SECRET: a comma-separated list, as HOST_SHARED_SECRET's, so that it
 * rotates without cutting off every open viewer (`new,old`, then `new` once old tokens expired,
 * 15 minutes later). Tokens are signed with the first and verified against each.
 */
const streamTokenSecrets = (setting: string): string[] => {
  const secrets = parseSecrets(setting);
  // Unset, or an HS256 key short enough to be guessed offline from one token (which would then
  // forge tokens for any run): a configuration error, the logged 500 of any other (errors.ts).
  const problem = secretsProblem("STREAM_TOKEN_SECRET", secrets);
  if (problem) throw new Error(problem);
  return secrets;
};

export async function mintStreamToken(
  /** The STREAM_TOKEN_SECRET setting: signed with its first value. */
  secret: string,
  claims: StreamTokenClaims,
  now: number = Date.now(),
): Promise<{ token: string; expiresAt: string }> {
  const issuedAt = Math.floor(now / 1000);
  const chainStartedAt = claims.chainStartedAt ?? issuedAt;
  // A renewed token does not outlive its chain.
  const expiresAt = Math.min(issuedAt + STREAM_TOKEN_TTL_SECONDS, chainStartedAt + STREAM_TOKEN_CHAIN_MAX_SECONDS);
  const token = await new SignJWT({ org: claims.organizationId, key: claims.apiKeyId, chain: chainStartedAt })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(claims.workflowId)
    .setIssuedAt(issuedAt)
    .setExpirationTime(expiresAt)
    .sign(encoder.encode(streamTokenSecrets(secret)[0]));
  return { token, expiresAt: new Date(expiresAt * 1000).toISOString() };
}

/**
 * What the rate limiter counts a stream token's requests against: its run. Every token of a run
 * shares the run's budget, so a leaked or looping token cannot reconnect without bound; the key
 * that minted it is not charged (a browser's reconnects do not eat its server's API budget).
 */
export const streamTokenRateLimitKey = (claims: Pick<StreamTokenClaims, "organizationId" | "workflowId">) =>
  `stream:${claims.organizationId}:${claims.workflowId}`;

/** A verified token, with the per-minute limit of the key that minted it when that key has its own. */
export interface LiveStreamToken extends StreamTokenClaims {
  rateLimitPerMinute?: number | null;
}

/**
 * The request's auth for a verified stream token: its organization, its one run, and its run's
 * rate limit: the minting key's own `rate_limit_per_minute` when it has one (a throttle an operator
 * set on a key holds for its tokens too), else RATE_LIMIT_PER_MINUTE.
 */
export const streamTokenAuthContext = (token: LiveStreamToken): AuthContext => ({
  organizationId: token.organizationId,
  apiKeyId: null,
  // Accepted on the history streams only (middleware/stream-token-auth, and middleware/key-scope again), for one run (runScope).
  scopes: [STREAM_TOKEN_SCOPE],
  runScope: token.workflowId,
  streamToken: {
    organizationId: token.organizationId,
    workflowId: token.workflowId,
    apiKeyId: token.apiKeyId,
    chainStartedAt: token.chainStartedAt,
  },
  rateLimitKey: streamTokenRateLimitKey(token),
  rateLimitPerMinute: token.rateLimitPerMinute ?? null,
});

/** What a refused stream token is told (401). */
export const STREAM_TOKEN_REFUSED =
  "the stream token is invalid or has expired (or the API key that minted it was revoked); mint a new one with POST /workflow/:id/stream-token";

/**
 * The token's claims, or null if it is forged, expired, not a stream token, or minted by an API
 * key that has since been revoked (checked through the key cache: within 30 s, as the key itself).
 * The key must be of the token's organization: the edge mints no other, so a token that pairs one
 * organization with another's key was not minted here. A genuine token of a suspended organization
 * is 403 `organization_suspended` (thrown), as its key would be.
 */
export async function verifyLiveStreamToken(db: D1Database, secret: string, token: string): Promise<LiveStreamToken | null> {
  const claims = await verifyStreamToken(secret, token);
  if (!claims) return null;
  const key = await liveApiKey(db, claims.apiKeyId);
  if (!key || key.organizationId !== claims.organizationId) return null;
  await refuseSuspendedOrganization(db, claims.organizationId);
  return { ...claims, rateLimitPerMinute: key.rateLimitPerMinute };
}

/** The token's claims, or null if it is forged (signed with none of `setting`'s values), expired or not a stream token. */
export async function verifyStreamToken(setting: string, token: string, now: number = Date.now()): Promise<StreamTokenClaims | null> {
  for (const secret of streamTokenSecrets(setting)) {
    const claims = await verifiedWith(secret, token, now);
    if (claims) return claims;
  }
  return null;
}

async function verifiedWith(secret: string, token: string, now: number): Promise<StreamTokenClaims | null> {
  try {
    const { payload } = await jwtVerify(token, encoder.encode(secret), {
      algorithms: ["HS256"],
      audience: AUDIENCE,
      issuer: ISSUER,
      currentDate: new Date(now),
      // Every token mintStreamToken signs has both; a token without an expiry would open streams for ever.
      requiredClaims: ["exp", "iat"],
    });
    if (typeof payload.sub !== "string" || typeof payload.org !== "string" || typeof payload.key !== "string") return null;
    // Tokens minted before chains were bounded carry no `chain`: theirs starts with them.
    const chainStartedAt = payload.chain === undefined ? payload.iat! : payload.chain;
    if (typeof chainStartedAt !== "number" || !Number.isFinite(chainStartedAt)) return null;
    if (now / 1000 - chainStartedAt > STREAM_TOKEN_CHAIN_MAX_SECONDS) return null;
    return { organizationId: payload.org, workflowId: payload.sub, apiKeyId: payload.key, chainStartedAt };
  } catch {
    return null;
  }
}
