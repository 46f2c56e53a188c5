/**
 * Compares a presented secret with the configured ones in constant time: both sides are hashed
 * first, so lengths never leak, and every configured value is checked. Edge only
 * (crypto.subtle.timingSafeEqual is a workerd API).
 */
const sha256 = async (text: string) => new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));

export async function matchesSecret(presented: string, secrets: readonly string[]): Promise<boolean> {
  const given = await sha256(presented);
  let match = false;
  for (const secret of secrets) if (crypto.subtle.timingSafeEqual(given, await sha256(secret))) match = true;
  return match;
}
