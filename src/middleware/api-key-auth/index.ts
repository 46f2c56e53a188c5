/**
 * Bearer API key authentication. `Authorization: Basic <key>` is accepted too, because
 * Output-compatible clients send their token that way (either the key itself or base64 of
 * `user:key`).
 */
import { createMiddleware } from "hono/factory";
import { parseApiKey, sha256Hex } from "../../shared/api-keys.ts";
import { setBounded } from "../../shared/bounded-map.ts";
import { parseIPv6 } from "../../shared/ip-ranges.ts";
import type { AppEnv, AuthContext } from "../../app-env.ts";
import { ApiError, INVALID_TOKEN_CHALLENGE } from "../../errors.ts";
import { findApiKeyWithOrganizationStatus } from "../../db/api-keys.ts";
import { unavailableOnTransient } from "../../lib/transient-errors.ts";
import { refuseSuspendedOrganization, rememberOrganizationStatus } from "../../lib/organization-status.ts";

/** How long a verified key stays cached in the isolate; also the longest a revoked key still works. */
export const API_KEY_CACHE_TTL_MS = 30_000;
const API_KEY_CACHE_MAX_ENTRIES = 1_000;

interface CachedKey {
  organizationId: string;
  /** The `<prefix>` the key was issued with: a key presented with another is not that key. */
  prefix: string;
  rateLimitPerMinute: number | null;
  secretSha256: string;
  scopes: string[];
  expiresAt: number;
}
const cache = new Map<string, CachedKey>();

/**
 * Key ids D1 has no live key for (never issued, or revoked), until when: a client that goes on
 * sending a revoked key (a forgotten cron job, a crash-looping deploy) costs one D1 read per
 * isolate every 30 s, not one per request. A revocation is final and ids are random, so an id
 * refused now does not become a key later. Kept apart from `cache` so that a flood of made-up ids
 * cannot evict the keys in use.
 */
const refused = new Map<string, number>();
const REFUSED_KEY_CACHE_MAX_ENTRIES = 10_000;

/**
 * Client addresses that looked up too many key ids D1 has no live key for (the
 * UNKNOWN_API_KEY_LOOKUPS binding refused one more), until when. Until then a key of theirs that
 * is not cached is refused without a lookup: made-up ids each cost a read on D1's primary, which
 * every tenant's runs share, and the refused-id cache cannot absorb ids that never repeat.
 */
const blockedAddresses = new Map<string, number>();
const BLOCKED_ADDRESSES_MAX_ENTRIES = 10_000;
/** How long an address stays refused once over its limit: the binding's period. */
const UNKNOWN_KEY_BLOCK_MS = 60_000;

/** For tests: forget every cached key, every refused id and every refused address. */
export function clearApiKeyCache(): void {
  cache.clear();
  refused.clear();
  blockedAddresses.clear();
}

/** IPv6 addresses are counted by their first 64 bits. */
const IPV6_CLIENT_PREFIX_BITS = 64n;

/**
 * The /64 an IPv6 address is in (`2001:db8:1:2::/64`), or null when `address` is not one. One host
 * is usually given a whole /64 (SLAAC, a cloud VM's interface), so counting each address apart
 * would give it 2^64 budgets of made-up key lookups.
 */
function ipv6Prefix(address: string): string | null {
  const bits = parseIPv6(address.toLowerCase());
  if (bits === null) return null;
  const prefix = bits >> (128n - IPV6_CLIENT_PREFIX_BITS);
  const groups = [48n, 32n, 16n, 0n].map((shift) => ((prefix >> shift) & 0xffffn).toString(16));
  return `${groups.join(":")}::/64`;
}

/**
 * Who the caller is for the count of unknown keys: its address as Cloudflare saw it, an IPv6 one
 * by its /64; one shared bucket where there is none (local dev).
 */
export function clientAddress(header: string | undefined): string {
  const address = header?.trim() || "unknown";
  return (address.includes(":") && ipv6Prefix(address)) || address;
}

/** 429 while the address is refused; its keys already cached still work. */
function refuseBlockedAddress(address: string, now: number): void {
  const until = blockedAddresses.get(address) ?? 0;
  if (until <= now) return;
  const retryAfter = Math.max(1, Math.ceil((until - now) / 1000));
  throw new ApiError(
    "rate_limited",
    `too many requests from your address with API keys that do not exist; retry after ${retryAfter} s`,
    undefined,
    { "retry-after": String(retryAfter) },
  );
}

/** Counts a lookup that found no live key against the address; over the limit, the address is refused for a while. */
async function countUnknownKey(env: Env, address: string, now: number): Promise<void> {
  let success: boolean;
  try {
    ({ success } = await env.UNKNOWN_API_KEY_LOOKUPS.limit({ key: address }));
  } catch (err) {
    // A guard, not the answer: the request is refused (401) either way, and a failing counter must not make it a 500.
    console.warn(JSON.stringify({ level: "warn", message: "UNKNOWN_API_KEY_LOOKUPS failed", error: String(err) }));
    return;
  }
  if (success) return;
  setBounded(blockedAddresses, address, now + UNKNOWN_KEY_BLOCK_MS, BLOCKED_ADDRESSES_MAX_ENTRIES);
}

export function credentialFromHeader(header: string | undefined, allowBasic: boolean): string | null {
  if (!header) return null;
  const [scheme, ...rest] = header.trim().split(/\s+/);
  const token = rest.join(" ");
  if (!token) return null;
  if (/^bearer$/i.test(scheme ?? "")) return token;
  if (allowBasic && /^basic$/i.test(scheme ?? "")) {
    if (parseApiKey(token)) return token;
    try {
      const decoded = atob(token);
      const colon = decoded.indexOf(":");
      if (colon < 0) return decoded;
      // user:key, or key: with an empty password
      return decoded.slice(colon + 1) || decoded.slice(0, colon);
    } catch {
      return null;
    }
  }
  return null;
}

async function constantTimeEqualHex(a: string, b: string): Promise<boolean> {
  const enc = new TextEncoder();
  const x = enc.encode(a);
  const y = enc.encode(b);
  if (x.byteLength !== y.byteLength) return false;
  return crypto.subtle.timingSafeEqual(x, y);
}

/**
 * The key with this id, from the isolate's cache or D1. `beforeRead` runs only when D1 must be
 * read, and `onUnknown` only when that read found no live key.
 */
async function lookUp(
  db: D1Database,
  id: string,
  hooks: { beforeRead?: () => void; onUnknown?: () => Promise<void> } = {},
): Promise<CachedKey | null> {
  const now = Date.now();
  const hit = cache.get(id);
  if (hit && hit.expiresAt > now) return hit;
  if ((refused.get(id) ?? 0) > now) return null;
  hooks.beforeRead?.();
  const row = await unavailableOnTransient("API key verification", () => findApiKeyWithOrganizationStatus(db, id));
  if (!row || row.revokedAt) {
    await hooks.onUnknown?.();
    cache.delete(id);
    setBounded(refused, id, now + API_KEY_CACHE_TTL_MS, REFUSED_KEY_CACHE_MAX_ENTRIES);
    return null;
  }
  rememberOrganizationStatus(row.organizationId, row.organizationSuspendedAt !== null, now);
  const entry = {
    organizationId: row.organizationId,
    prefix: row.prefix,
    rateLimitPerMinute: row.rateLimitPerMinute,
    secretSha256: row.secretSha256,
    scopes: row.scopes,
    expiresAt: now + API_KEY_CACHE_TTL_MS,
  };
  setBounded(cache, id, entry, API_KEY_CACHE_MAX_ENTRIES);
  return entry;
}

/**
 * An API key that still works (not revoked, not deleted), with its own rate limit (null: the
 * default), or null; by the same 30 s isolate cache as key auth: what a stream token checks of the
 * key that minted it, on every connect.
 */
export async function liveApiKey(
  db: D1Database,
  id: string,
): Promise<{ organizationId: string; rateLimitPerMinute: number | null } | null> {
  const key = await lookUp(db, id);
  return key && { organizationId: key.organizationId, rateLimitPerMinute: key.rateLimitPerMinute };
}

export const apiKeyAuth = (options: { allowBasic?: boolean } = {}) =>
  createMiddleware<AppEnv>(async (c, next) => {
    const credential = credentialFromHeader(c.req.header("authorization"), options.allowBasic ?? false);
    if (!credential) {
      // Where Output's CLI calls (Basic), say what it can do: it sends OUTPUT_API_AUTH_TOKEN, and prints this message.
      const how = options.allowBasic
        ? "send an API key as `Authorization: Bearer <key>` or `Basic <key>` (Output's CLI: set OUTPUT_API_AUTH_TOKEN to the key)"
        : "send an API key as `Authorization: Bearer <key>`";
      // The default challenge (errorResponse): no credential, so no error="invalid_token".
      throw new ApiError("unauthorized", how);
    }
    const parsed = parseApiKey(credential);
    const address = clientAddress(c.req.header("cf-connecting-ip"));
    const now = Date.now();
    const key = parsed
      ? await lookUp(c.env.DB, parsed.id, {
          beforeRead: () => refuseBlockedAddress(address, now),
          onUnknown: () => countUnknownKey(c.env, address, now),
        })
      : null;
    // Hash even when the key is unknown, so timing does not tell unknown ids from wrong secrets.
    const digest = await sha256Hex(parsed?.secret ?? credential);
    const matches = key !== null && (await constantTimeEqualHex(digest, key.secretSha256));
    if (!key || !matches || parsed!.prefix !== key.prefix) {
      throw new ApiError("unauthorized", "the API key is not valid (unknown, revoked or mistyped)", undefined, {
        "www-authenticate": INVALID_TOKEN_CHALLENGE,
      });
    }
    // Only now, with the key verified: a caller without it learns nothing of the organization.
    await refuseSuspendedOrganization(c.env.DB, key.organizationId);
    const auth: AuthContext = {
      organizationId: key.organizationId,
      apiKeyId: parsed!.id,
      scopes: key.scopes,
      rateLimitPerMinute: key.rateLimitPerMinute,
    };
    c.set("auth", auth);
    await next();
  });
