/**
 * Secrets kept encrypted at rest that we must read back (webhook signing secrets): AES-256-GCM
 * with WebCrypto, a random 12-byte IV per value, and caller-given additional authenticated data
 * (the row's identity), so a ciphertext copied onto another row does not decrypt.
 *
 * Stored form: `enc1:<keyId>:<base64 iv>:<base64 ciphertext+tag>`. A value without the `enc1:`
 * prefix is a legacy plain value and is returned as is; `resealSecret` seals it (and re-seals a
 * value under an older key) without changing the secret (src/webhooks/secret-reseal.ts).
 *
 * Keys: a comma-separated list `<keyId>:<base64 32-byte key>` (the WEBHOOK_SECRET_KEYS secret).
 * The first key encrypts; any listed key decrypts. To rotate, put a new key first and keep the
 * old ones listed until no row uses them.
 */

export const SEALED_PREFIX = "enc1:";
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const IV_BYTES = 12;

/** A secret that cannot be sealed or opened; `code` names the problem. */
export class SecretBoxError extends Error {
  constructor(
    readonly code: "secret_keys_missing" | "secret_keys_invalid" | "secret_key_unknown" | "secret_malformed" | "secret_not_authentic",
    message: string,
  ) {
    super(message);
    this.name = "SecretBoxError";
  }
}

interface Keyring {
  currentId: string;
  keys: Map<string, CryptoKey>;
}

const keyrings = new Map<string, Promise<Keyring>>();

function fromBase64(value: string): Uint8Array<ArrayBuffer> {
  const bin = atob(value);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

async function buildKeyring(spec: string): Promise<Keyring> {
  const keys = new Map<string, CryptoKey>();
  let currentId: string | null = null;
  for (const entry of spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    const sep = entry.indexOf(":");
    const id = sep > 0 ? entry.slice(0, sep) : "";
    if (!KEY_ID.test(id))
      throw new SecretBoxError("secret_keys_invalid", "each key must be <keyId>:<base64 32-byte key> (keyId: 1-32 of A-Z a-z 0-9 _ -)");
    if (keys.has(id)) throw new SecretBoxError("secret_keys_invalid", `key id "${id}" is listed twice`);
    let raw: Uint8Array<ArrayBuffer>;
    try {
      raw = fromBase64(entry.slice(sep + 1));
    } catch {
      throw new SecretBoxError("secret_keys_invalid", `key "${id}" is not base64`);
    }
    if (raw.length !== 32) throw new SecretBoxError("secret_keys_invalid", `key "${id}" must be 32 bytes (it is ${raw.length})`);
    keys.set(id, await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]));
    currentId ??= id;
  }
  if (currentId === null) throw new SecretBoxError("secret_keys_missing", "no encryption key is configured (WEBHOOK_SECRET_KEYS)");
  return { currentId, keys };
}

function keyring(spec: string | undefined): Promise<Keyring> {
  if (!spec?.trim())
    return Promise.reject(new SecretBoxError("secret_keys_missing", "no encryption key is configured (WEBHOOK_SECRET_KEYS)"));
  let ring = keyrings.get(spec);
  if (!ring) {
    ring = buildKeyring(spec);
    ring.catch(() => keyrings.delete(spec));
    keyrings.set(spec, ring);
  }
  return ring;
}

/** Whether a stored value is sealed (else it is a legacy plain value). */
export const isSealed = (stored: string) => stored.startsWith(SEALED_PREFIX);

/** Encrypts `plain` with the newest key, bound to `aad`. */
export async function sealSecret(keys: string | undefined, plain: string, aad: string): Promise<string> {
  const ring = await keyring(keys);
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: new TextEncoder().encode(aad) },
    ring.keys.get(ring.currentId)!,
    new TextEncoder().encode(plain),
  );
  return `${SEALED_PREFIX}${ring.currentId}:${toBase64(iv)}:${toBase64(new Uint8Array(sealed))}`;
}

/** The plain secret of a stored value: decrypted if sealed (with the same `aad`), as is if legacy plain. */
export async function openSecret(keys: string | undefined, stored: string, aad: string): Promise<string> {
  if (!isSealed(stored)) return stored;
  const parts = stored.split(":");
  if (parts.length !== 4) throw new SecretBoxError("secret_malformed", "the stored secret is not enc1:<keyId>:<iv>:<ciphertext>");
  const [, keyId, ivText, dataText] = parts as [string, string, string, string];
  const ring = await keyring(keys);
  const key = ring.keys.get(keyId);
  if (!key) throw new SecretBoxError("secret_key_unknown", `the stored secret was encrypted with key "${keyId}", which is not configured`);
  let iv: Uint8Array<ArrayBuffer>;
  let data: Uint8Array<ArrayBuffer>;
  try {
    iv = fromBase64(ivText);
    data = fromBase64(dataText);
  } catch {
    throw new SecretBoxError("secret_malformed", "the stored secret is not valid base64");
  }
  if (iv.length !== IV_BYTES) throw new SecretBoxError("secret_malformed", "the stored secret's IV is not 12 bytes");
  try {
    const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv, additionalData: new TextEncoder().encode(aad) }, key, data);
    return new TextDecoder().decode(plain);
  } catch {
    throw new SecretBoxError(
      "secret_not_authentic",
      "the stored secret does not decrypt for this row (wrong key, or copied from another row)",
    );
  }
}

/** The id of the key that seals new values (the first listed); throws when the keys are missing or malformed. */
export async function currentKeyId(keys: string | undefined): Promise<string> {
  return (await keyring(keys)).currentId;
}

/**
 * The same secret sealed under the newest key when `stored` is not already: a legacy plain value
 * (`kind: "sealed"`) or one sealed under an older listed key (`kind: "resealed"`); null when it is
 * current. Throws a SecretBoxError when the keys are missing or malformed, or the value does not open.
 */
export async function resealSecret(
  keys: string | undefined,
  stored: string,
  aad: string,
): Promise<{ kind: "sealed" | "resealed"; value: string } | null> {
  const current = await currentKeyId(keys);
  if (stored.startsWith(`${SEALED_PREFIX}${current}:`)) return null;
  const plain = await openSecret(keys, stored, aad);
  return { kind: isSealed(stored) ? "resealed" : "sealed", value: await sealSecret(keys, plain, aad) };
}

/** The additional authenticated data of a webhook endpoint's signing secret. */
export const webhookSecretAad = (organizationId: string, endpointId: string) => `webhook-secret\u0000${organizationId}\u0000${endpointId}`;

/**
 * A key list that is missing or malformed is the operator's to fix (the WEBHOOK_SECRET_KEYS
 * secret): the stable code and a message saying so, or null for any other error. The admin API
 * answers it as a 500 with this code (retrying will not help until the secret is set), and a
 * delivery logs it as its attempt's error and retries, so nothing is dropped meanwhile.
 */
export function secretKeysProblem(
  err: unknown,
): { code: "webhook_secret_keys_missing" | "webhook_secret_keys_invalid"; message: string } | null {
  if (!(err instanceof SecretBoxError)) return null;
  if (err.code === "secret_keys_missing") {
    return {
      code: "webhook_secret_keys_missing",
      message: "webhook signing secrets cannot be encrypted or read: the WEBHOOK_SECRET_KEYS secret is not set; the operator must set it",
    };
  }
  if (err.code === "secret_keys_invalid") {
    return {
      code: "webhook_secret_keys_invalid",
      message: `webhook signing secrets cannot be encrypted or read: the WEBHOOK_SECRET_KEYS secret is malformed (${err.message}); the operator must fix it`,
    };
  }
  return null;
}
