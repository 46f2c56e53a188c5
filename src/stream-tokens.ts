/**
 * Run-scoped stream tokens: `EventSource` cannot send an Authorization header, so start and run
 * responses carry a short-lived token that lets a browser open that one run's stream with
 * `?token=`. HS256 JWTs (jose), signed with STREAM_TOKEN_SECRET.
 */
import { SignJWT, jwtVerify } from "jose";
import type { AuthContext } from "./app-env.ts";

/** How long a stream token is valid. EventSource reconnects reuse the URL, so not too short. */
export const STREAM_TOKEN_TTL_SECONDS = 15 * 60;
const AUDIENCE = "outrider:run-stream";
const ISSUER = "outrider";

const encoder = new TextEncoder();

export interface StreamTokenClaims {
  organizationId: string;
  workflowId: string;
}

export async function mintStreamToken(
  secret: string,
  claims: StreamTokenClaims,
  now: number = Date.now(),
): Promise<{ token: string; expiresAt: string }> {
  const issuedAt = Math.floor(now / 1000);
  const expiresAt = issuedAt + STREAM_TOKEN_TTL_SECONDS;
  const token = await new SignJWT({ org: claims.organizationId })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(claims.workflowId)
    .setIssuedAt(issuedAt)
    .setExpirationTime(expiresAt)
    .sign(encoder.encode(secret));
  return { token, expiresAt: new Date(expiresAt * 1000).toISOString() };
}

/**
 * What the rate limiter counts a stream token's requests against: its run. Every token of a run
 * shares the run's budget (RATE_LIMIT_PER_MINUTE), so a leaked or looping token cannot reconnect
 * without bound; the key that minted it is not charged.
 */
export const streamTokenRateLimitKey = (claims: StreamTokenClaims) => `stream:${claims.organizationId}:${claims.workflowId}`;

/** The request's auth for a verified stream token: its organization, its one run, its run's rate limit. */
export const streamTokenAuthContext = (claims: StreamTokenClaims): AuthContext => ({
  organizationId: claims.organizationId,
  apiKeyId: null,
  scopes: ["run:stream"],
  runScope: claims.workflowId,
  rateLimitKey: streamTokenRateLimitKey(claims),
});

/** The token's claims, or null if it is forged, expired or not a stream token. */
export async function verifyStreamToken(secret: string, token: string, now: number = Date.now()): Promise<StreamTokenClaims | null> {
  try {
    const { payload } = await jwtVerify(token, encoder.encode(secret), {
      algorithms: ["HS256"],
      audience: AUDIENCE,
      issuer: ISSUER,
      currentDate: new Date(now),
    });
    if (typeof payload.sub !== "string" || typeof payload.org !== "string") return null;
    return { organizationId: payload.org, workflowId: payload.sub };
  } catch {
    return null;
  }
}
