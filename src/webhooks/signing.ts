/**
 * Standard Webhooks (https://www.standardwebhooks.com/) signing: secrets are `whsec_<base64>`
 * (24 random bytes), a message is signed as `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
 * with the secret's decoded bytes as key, and sent with `webhook-id`, `webhook-timestamp`
 * (seconds) and `webhook-signature`.
 */
const SECRET_PREFIX = "whsec_";
const SECRET_BYTES = 24;

const toBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text: string) => Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));

export function generateWebhookSecret(): string {
  return SECRET_PREFIX + toBase64(crypto.getRandomValues(new Uint8Array(SECRET_BYTES)));
}

export async function signWebhook(secret: string, messageId: string, timestampSeconds: number, body: string): Promise<string> {
  const keyBytes = fromBase64(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret);
  const key = await crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${messageId}.${timestampSeconds}.${body}`));
  return `v1,${toBase64(new Uint8Array(mac))}`;
}

/**
 * The three headers of one attempt (the timestamp is the attempt's; the id is the message's).
 * `secrets`: the current secret first, then a rotated one still within its overlap; one signature
 * each, space-separated, as Standard Webhooks allows (a receiver accepts the message if any verifies).
 */
export async function webhookHeaders(
  secrets: readonly string[],
  messageId: string,
  body: string,
  now = Date.now(),
): Promise<Record<string, string>> {
  const timestamp = Math.floor(now / 1000);
  const signatures = await Promise.all(secrets.map((secret) => signWebhook(secret, messageId, timestamp, body)));
  return {
    "content-type": "application/json",
    "user-agent": "Outrider-Webhooks/1",
    "webhook-id": messageId,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signatures.join(" "),
  };
}

/** Terminal run statuses and the event type each one sends. */
export const WEBHOOK_EVENT_TYPES = ["run.completed", "run.failed", "run.cancelled", "run.terminated", "run.timed_out"] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export function eventTypeForStatus(status: string): WebhookEventType | null {
  const type = `run.${status}`;
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(type) ? (type as WebhookEventType) : null;
}
