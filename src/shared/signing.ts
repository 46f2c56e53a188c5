/**
 * HMAC signing for calls between the edge Worker and the Node host, in both directions.
 *
 * The signature covers method, path (with query), a timestamp, a random nonce and the SHA-256 of
 * the body, so a captured request cannot be replayed against another route, with another body,
 * or after the window closes; receivers remember the nonces they accepted within the window and
 * refuse a second use (a replay). Uses only WebCrypto, so the same code runs in workerd and Node.
 *
 * The body's hash also travels in a header (CONTENT_HASH_HEADER), so a receiver checks the HMAC
 * before it reads a byte of the body: a request whose signature is forged is refused at once,
 * instead of making the receiver read and hash up to MAX_SIGNED_BODY_BYTES (or wait on a body that
 * never ends) first. Only then is the body read and its hash compared with the signed one.
 */

export const SIGNATURE_HEADER = "x-outrider-signature";
export const TIMESTAMP_HEADER = "x-outrider-timestamp";
export const NONCE_HEADER = "x-outrider-nonce";
/** The SHA-256 (hex) of the body the signature covers. */
export const CONTENT_HASH_HEADER = "x-outrider-content-sha256";
/** How far a signed request's timestamp may be from the receiver's clock. */
export const SIGNATURE_WINDOW_SECONDS = 300;
/** v3: the body's hash in CONTENT_HASH_HEADER (v2 had it only inside the signature; no longer accepted). */
const SIGNATURE_VERSION = "v3";

const encoder = new TextEncoder();

function toHex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(body: string | Uint8Array): Promise<string> {
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  return toHex(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

const keyCache = new Map<string, Promise<CryptoKey>>();
function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    keyCache.set(secret, key);
  }
  return key;
}

function canonical(method: string, pathAndQuery: string, timestamp: string, nonce: string, bodyHash: string) {
  return `${SIGNATURE_VERSION}\n${method.toUpperCase()}\n${pathAndQuery}\n${timestamp}\n${nonce}\n${bodyHash}`;
}

export interface SignedHeaders {
  [TIMESTAMP_HEADER]: string;
  [NONCE_HEADER]: string;
  [CONTENT_HASH_HEADER]: string;
  [SIGNATURE_HEADER]: string;
}

const NONCE_PATTERN = /^[0-9a-f]{32}$/;
const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/;

export async function signRequest(
  secret: string,
  method: string,
  pathAndQuery: string,
  body: string | Uint8Array = "",
  now: number = Date.now(),
): Promise<SignedHeaders> {
  const timestamp = String(Math.floor(now / 1000));
  // Fresh for every request, retries included: a retry is a new request, a replay is not.
  const nonce = toHex(crypto.getRandomValues(new Uint8Array(16)).buffer as ArrayBuffer);
  const bodyHash = await sha256Hex(body);
  const mac = await crypto.subtle.sign(
    "HMAC",
    await hmacKey(secret),
    encoder.encode(canonical(method, pathAndQuery, timestamp, nonce, bodyHash)),
  );
  return {
    [TIMESTAMP_HEADER]: timestamp,
    [NONCE_HEADER]: nonce,
    [CONTENT_HASH_HEADER]: bodyHash,
    [SIGNATURE_HEADER]: `${SIGNATURE_VERSION}=${toHex(mac)}`,
  };
}

export type VerifyFailure = "missing_signature" | "stale_signature" | "bad_signature" | "replayed_signature";

/**
 * Checks a signed request. `secrets` may hold more than one value so that the shared secret can be
 * rotated without downtime (accept old and new, then drop the old). `body` may be a function that
 * reads it: it is called only once the signature over the headers (the body's hash among them) is
 * valid, so a request that is not signed with a secret is refused without its body ever being read.
 */
export async function verifyRequest(
  secrets: readonly string[],
  method: string,
  pathAndQuery: string,
  headers: { get(name: string): string | null },
  body: string | Uint8Array | (() => Promise<string | Uint8Array>),
  now: number = Date.now(),
): Promise<{ ok: true; nonce: string; expiresAt: number } | { ok: false; reason: VerifyFailure }> {
  const timestamp = headers.get(TIMESTAMP_HEADER);
  const nonce = headers.get(NONCE_HEADER);
  const signature = headers.get(SIGNATURE_HEADER);
  const bodyHash = headers.get(CONTENT_HASH_HEADER);
  if (!timestamp || !nonce || !bodyHash || !signature?.startsWith(`${SIGNATURE_VERSION}=`)) {
    return { ok: false, reason: "missing_signature" };
  }
  if (!NONCE_PATTERN.test(nonce) || !SHA256_HEX_PATTERN.test(bodyHash)) return { ok: false, reason: "bad_signature" };
  const seconds = Number(timestamp);
  if (!Number.isInteger(seconds) || Math.abs(now / 1000 - seconds) > SIGNATURE_WINDOW_SECONDS) {
    return { ok: false, reason: "stale_signature" };
  }
  const hex = signature.slice(SIGNATURE_VERSION.length + 1);
  if (!SHA256_HEX_PATTERN.test(hex)) return { ok: false, reason: "bad_signature" };
  const mac = new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
  const data = encoder.encode(canonical(method, pathAndQuery, timestamp, nonce, bodyHash));
  let signed = false;
  for (const secret of secrets) {
    // crypto.subtle.verify compares in constant time.
    if (secret && (await crypto.subtle.verify("HMAC", await hmacKey(secret), mac, data))) {
      signed = true;
      break;
    }
  }
  if (!signed) return { ok: false, reason: "bad_signature" };
  // Signed: now the body is worth reading. It must be the one whose hash was signed.
  const bytes = typeof body === "function" ? await body() : body;
  if ((await sha256Hex(bytes)) !== bodyHash) return { ok: false, reason: "bad_signature" };
  // The nonce must be remembered until the request could no longer pass the time check.
  return { ok: true, nonce, expiresAt: (seconds + SIGNATURE_WINDOW_SECONDS + 1) * 1000 };
}

/** Splits a comma-separated secret list (current first, then the one being rotated out). */
export function parseSecrets(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * The shortest an HMAC-SHA256 secret may be (HOST_SHARED_SECRET, STREAM_TOKEN_SECRET), for each
 * value of its list: one signed request or stream token is enough to test guesses offline, as fast
 * as a GPU hashes, so a short secret is a guessable one. 32 characters is the usual bar.
 */
export const MIN_SECRET_LENGTH = 32;

/**
 * What makes a secret list (parseSecrets's) unfit to sign or verify with: no value, or a value
 * shorter than MIN_SECRET_LENGTH (the one being rotated out too: it would still open the door).
 * Names the setting and the value's place in the list, never the value. undefined: fit.
 */
export function secretsProblem(name: string, secrets: readonly string[]): string | undefined {
  if (secrets.length === 0) return `${name} is not set`;
  const short = secrets.findIndex((s) => s.length < MIN_SECRET_LENGTH);
  if (short < 0) return undefined;
  const place = secrets.length === 1 ? "its value" : `value ${short + 1} of ${secrets.length}`;
  return `${name} is too short (${place}): each value must be at least ${MIN_SECRET_LENGTH} characters (a long random value, e.g. \`openssl rand -hex 32\`)`;
}

/**
 * Nonces accepted within the signature window, in memory (for a single receiving process, such as
 * one Node host). The edge keeps its own in D1, shared by every isolate.
 */
export class NonceMemory {
  private readonly seen = new Map<string, number>();

  /** true the first time a nonce is claimed; false for a replay. */
  claim(nonce: string, expiresAt: number, now = Date.now()): boolean {
    if (this.seen.size > 10_000 || Math.random() < 0.01) {
      for (const [n, until] of this.seen) if (until < now) this.seen.delete(n);
    }
    if ((this.seen.get(nonce) ?? 0) >= now) return false;
    this.seen.set(nonce, expiresAt);
    return true;
  }
}
