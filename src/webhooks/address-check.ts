/**
 * Where a webhook URL's host name points. The URL policy (url-policy.ts) refuses private IP
 * literals and internal-only names, but a public-looking name can have DNS records that point at a
 * private, loopback or metadata address. So the name is looked up, A and AAAA, over
 * DNS-over-HTTPS (the JSON API of Cloudflare's and Google's resolvers: workerd has no DNS API of
 * its own), when the endpoint is registered and again before every delivery attempt, and every
 * address it has must be public (src/shared/ip-ranges.ts).
 *
 * What this cannot close: workerd's fetch resolves the name again itself, so a name whose records
 * change between our lookup and the send (DNS rebinding) is not caught. On Cloudflare a Worker's
 * outbound fetch cannot reach private networks in any case; the lookup keeps such endpoints from
 * being registered, and stops deliveries to a name that later moves to a private address.
 */
import { z } from "zod";
import { isIpLiteral, refusedRange } from "../shared/ip-ranges.ts";
import { urlPolicyFrom, webhookUrlProblem } from "./url-policy.ts";

/** Used when WEBHOOK_DNS_RESOLVER is unset or empty. */
export const DEFAULT_DNS_RESOLVER = "https://cloudflare-dns.com/dns-query";
/** WEBHOOK_DNS_RESOLVER's value that turns the lookup off (`npm run dev`, which may be offline; never in production). */
export const DNS_LOOKUP_OFF = "off";
/** One lookup (A and AAAA, in parallel) may take this long. */
export const DNS_LOOKUP_TIMEOUT_MS = 5_000;
/** What a registration answers when the resolver cannot be reached: retry after this long (seconds). */
export const DNS_RETRY_AFTER_SECONDS = 5;

const RECORD_TYPES = { A: 1, AAAA: 28 } as const;
/** DNS response codes (RFC 1035): the name exists, or it does not; anything else is a failed lookup. */
const NOERROR = 0;
const NXDOMAIN = 3;

/** The JSON API's answer (RFC 8427 names), only the fields read here. */
const dohAnswer = z.object({
  Status: z.number().int(),
  Answer: z.array(z.object({ type: z.number().int(), data: z.string() })).optional(),
});

export type AddressCheck =
  | { verdict: "public" }
  /** The name has a non-public address, or none: the URL cannot receive webhooks. */
  | { verdict: "refused"; problem: string }
  /** The resolver could not be asked or did not answer: try again later. */
  | { verdict: "unknown"; problem: string }
  /** WEBHOOK_DNS_RESOLVER is not an http(s) URL: the operator's to fix; no retry helps until then. */
  | { verdict: "misconfigured"; problem: string };

/** Why WEBHOOK_DNS_RESOLVER cannot be asked (its value is not repeated: it may carry credentials), or null. */
function resolverProblem(resolver: string): string | null {
  const protocol = URL.parse(resolver)?.protocol;
  if (protocol === "https:" || protocol === "http:") return null;
  return "WEBHOOK_DNS_RESOLVER is not an http(s) URL: set it to a DNS-over-HTTPS JSON API's URL, or to `off` in development";
}

/**
 * Whether a URL may receive webhooks: the URL policy, then where its host name points. What a
 * registration checks, and every delivery attempt again.
 */
export async function checkWebhookUrl(
  url: string,
  env: { WEBHOOK_ALLOW_LOOPBACK_HTTP?: string; WEBHOOK_DNS_RESOLVER?: string },
): Promise<AddressCheck> {
  const problem = webhookUrlProblem(url, urlPolicyFrom(env));
  if (problem) return { verdict: "refused", problem };
  return checkWebhookAddress(url, dnsResolverFrom(env));
}

/** The resolver to ask, or null when the lookup is off. */
export function dnsResolverFrom(env: { WEBHOOK_DNS_RESOLVER?: string }): string | null {
  const value = env.WEBHOOK_DNS_RESOLVER?.trim() ?? "";
  if (value === DNS_LOOKUP_OFF) return null;
  return value || DEFAULT_DNS_RESOLVER;
}

/**
 * Looks up the host of a URL the URL policy already accepted. IP literals were checked by the
 * policy and need no lookup; neither does anything when `resolver` is null.
 */
export async function checkWebhookAddress(urlText: string, resolver: string | null): Promise<AddressCheck> {
  const host = new URL(urlText).hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (resolver === null || isIpLiteral(host)) return { verdict: "public" };
  const misconfigured = resolverProblem(resolver);
  if (misconfigured) return { verdict: "misconfigured", problem: misconfigured };
  const name = host.replace(/\.+$/, "");
  const lookups = await Promise.all([lookup(resolver, name, "A"), lookup(resolver, name, "AAAA")]);
  // A non-public address either lookup found refuses the URL for good, whatever the other did.
  const addresses = lookups.flatMap((l) => ("addresses" in l ? l.addresses : []));
  for (const address of addresses) {
    const refused = isIpLiteral(address) ? refusedRange(address) : "not an IP address";
    if (refused) return { verdict: "refused", problem: `"${name}" resolves to ${address}, which is not public: ${refused}` };
  }
  const failed = lookups.find((l) => "failure" in l);
  if (failed && "failure" in failed) return { verdict: "unknown", problem: `could not look up "${name}": ${failed.failure}` };
  if (addresses.length === 0) return { verdict: "refused", problem: `"${name}" does not resolve to any address` };
  return { verdict: "public" };
}

async function lookup(
  resolver: string,
  name: string,
  type: keyof typeof RECORD_TYPES,
): Promise<{ addresses: string[] } | { failure: string }> {
  const url = new URL(resolver);
  url.searchParams.set("name", name);
  url.searchParams.set("type", type);
  let body: unknown;
  try {
    const res = await fetch(url, { headers: { accept: "application/dns-json" }, signal: AbortSignal.timeout(DNS_LOOKUP_TIMEOUT_MS) });
    if (!res.ok) {
      await res.body?.cancel();
      return { failure: `the resolver answered ${res.status}` };
    }
    body = await res.json();
  } catch (err) {
    return {
      failure:
        err instanceof Error && err.name === "TimeoutError"
          ? "the resolver did not answer in time"
          : `the resolver could not be reached (${String(err)})`,
    };
  }
  const parsed = dohAnswer.safeParse(body);
  if (!parsed.success) return { failure: "the resolver's answer is not DNS JSON" };
  if (parsed.data.Status === NXDOMAIN) return { addresses: [] };
  if (parsed.data.Status !== NOERROR) return { failure: `the lookup failed (DNS response code ${parsed.data.Status})` };
  // CNAME records come first in the chain; only the addresses at its end are connected to.
  const addresses = (parsed.data.Answer ?? []).filter((record) => record.type === RECORD_TYPES[type]).map((record) => record.data);
  return { addresses };
}
