import { describe, expect, it } from "vitest";
import { isSealed, openSecret, SecretBoxError, sealSecret, webhookSecretAad } from "./secret-box.ts";

const key = (byte: number) => btoa(String.fromCharCode(...new Uint8Array(32).fill(byte)));
const KEYS = `k2:${key(2)},k1:${key(1)}`;
const AAD = webhookSecretAad("org_a", "whk_1");
const PLAIN = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof SecretBoxError) return err.code;
    throw err;
  }
  throw new Error("did not throw");
}

describe("secret box: happy path", () => {
  it("seals with the first key and a fresh IV, and opens back to the plain value", async () => {
    const a = await sealSecret(KEYS, PLAIN, AAD);
    const b = await sealSecret(KEYS, PLAIN, AAD);
    expect(a).toMatch(/^enc1:k2:[A-Za-z0-9+/=]{16}:[A-Za-z0-9+/=]+$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain(PLAIN);
    expect(isSealed(a)).toBe(true);
    expect(await openSecret(KEYS, a, AAD)).toBe(PLAIN);
    expect(await openSecret(KEYS, b, AAD)).toBe(PLAIN);
  });

  it("any listed key opens: a value sealed under the old key still opens after a new key is put first", async () => {
    const old = await sealSecret(`k1:${key(1)}`, PLAIN, AAD);
    expect(old.startsWith("enc1:k1:")).toBe(true);
    expect(await openSecret(KEYS, old, AAD)).toBe(PLAIN);
  });

  it("a legacy plain value (no enc1: prefix) is returned as is", async () => {
    expect(isSealed(PLAIN)).toBe(false);
    expect(await openSecret(KEYS, PLAIN, AAD)).toBe(PLAIN);
  });
});

describe("secret box: errors", () => {
  it("names a missing or malformed key list", async () => {
    expect(await codeOf(sealSecret(undefined, PLAIN, AAD))).toBe("secret_keys_missing");
    expect(await codeOf(sealSecret(" ", PLAIN, AAD))).toBe("secret_keys_missing");
    expect(await codeOf(sealSecret(key(1), PLAIN, AAD))).toBe("secret_keys_invalid");
    expect(await codeOf(sealSecret(`k1:${btoa("too short")}`, PLAIN, AAD))).toBe("secret_keys_invalid");
    expect(await codeOf(sealSecret("k1:not base64!!", PLAIN, AAD))).toBe("secret_keys_invalid");
    expect(await codeOf(sealSecret(`k1:${key(1)},k1:${key(2)}`, PLAIN, AAD))).toBe("secret_keys_invalid");
    expect(await codeOf(sealSecret(`bad id:${key(1)}`, PLAIN, AAD))).toBe("secret_keys_invalid");
  });

  it("names a malformed stored value", async () => {
    expect(await codeOf(openSecret(KEYS, "enc1:k2:only-three", AAD))).toBe("secret_malformed");
    expect(await codeOf(openSecret(KEYS, "enc1:k2:!!:!!", AAD))).toBe("secret_malformed");
    expect(await codeOf(openSecret(KEYS, `enc1:k2:${btoa("short")}:${btoa("x")}`, AAD))).toBe("secret_malformed");
  });
});

describe("secret box: security", () => {
  it("a value copied to another row (other endpoint or organization) does not open", async () => {
    const sealed = await sealSecret(KEYS, PLAIN, AAD);
    expect(await codeOf(openSecret(KEYS, sealed, webhookSecretAad("org_a", "whk_2")))).toBe("secret_not_authentic");
    expect(await codeOf(openSecret(KEYS, sealed, webhookSecretAad("org_b", "whk_1")))).toBe("secret_not_authentic");
  });

  it("an unknown key id is a clear error; a wrong key with a known id does not open", async () => {
    const sealed = await sealSecret(KEYS, PLAIN, AAD);
    const err = await openSecret(`k1:${key(1)}`, sealed, AAD).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SecretBoxError);
    expect((err as SecretBoxError).code).toBe("secret_key_unknown");
    expect((err as Error).message).toContain('"k2"');
    expect(await codeOf(openSecret(`k2:${key(9)}`, sealed, AAD))).toBe("secret_not_authentic");
  });

  it("a tampered ciphertext or IV does not open", async () => {
    const sealed = await sealSecret(KEYS, PLAIN, AAD);
    const [p, id, iv, data] = sealed.split(":") as [string, string, string, string];
    const flip = (b64: string) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      bytes[0]! ^= 1;
      return btoa(String.fromCharCode(...bytes));
    };
    expect(await codeOf(openSecret(KEYS, [p, id, iv, flip(data)].join(":"), AAD))).toBe("secret_not_authentic");
    expect(await codeOf(openSecret(KEYS, [p, id, flip(iv), data].join(":"), AAD))).toBe("secret_not_authentic");
  });
});
