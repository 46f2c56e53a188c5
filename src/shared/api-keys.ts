/**
 * API keys look like `<prefix>_<id>_<secret>`. The id finds the row; only the SHA-256 of the secret
 * is stored. Shared by the edge (verification) and the Node scripts that mint keys.
 */

export const API_KEY_PREFIX = "otr";
const KEY_PATTERN = /^([a-z]{2,8})_([a-z0-9]{8,32})_([A-Za-z0-9]{24,128})$/;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

export interface ParsedApiKey {
  prefix: string;
  id: string;
  secret: string;
}

export function parseApiKey(key: string): ParsedApiKey | null {
  const m = KEY_PATTERN.exec(key);
  return m ? { prefix: m[1]!, id: m[2]!, secret: m[3]! } : null;
}

export function randomString(length: number, alphabet: string): string {
  // Rejection sampling keeps every character equally likely.
  const out: string[] = [];
  const limit = 256 - (256 % alphabet.length);
  while (out.length < length) {
    for (const b of crypto.getRandomValues(new Uint8Array(length * 2))) {
      if (b < limit && out.length < length) out.push(alphabet[b % alphabet.length]!);
    }
  }
  return out.join("");
}

export function generateApiKey(prefix: string = API_KEY_PREFIX): { key: string; id: string; secret: string; prefix: string } {
  const id = randomString(12, "abcdefghijklmnopqrstuvwxyz0123456789");
  const secret = randomString(40, ALPHABET);
  return { key: `${prefix}_${id}_${secret}`, id, secret, prefix };
}

export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
