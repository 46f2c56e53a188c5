/**
 * Which IP addresses are not public unicast, in plain TypeScript (no node:net), so the edge
 * (workerd) can use it: the webhook URL policy (src/webhooks/url-policy.ts). The host's outbound
 * HTTP guard (host/activities/outbound-guard.ts) checks the same REFUSED_RANGES with node:net's
 * BlockList.
 */

/** Refused ranges, each with the name a refusal gives: everything that is not public unicast. */
export const REFUSED_RANGES: ReadonlyArray<readonly [cidr: string, name: string]> = [
  ["0.0.0.0/8", "unspecified (0.0.0.0/8)"],
  ["10.0.0.0/8", "private (10.0.0.0/8)"],
  ["100.64.0.0/10", "carrier-grade NAT (100.64.0.0/10)"],
  ["127.0.0.0/8", "loopback (127.0.0.0/8)"],
  ["169.254.0.0/16", "link-local (169.254.0.0/16, cloud metadata)"],
  ["172.16.0.0/12", "private (172.16.0.0/12)"],
  ["192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"],
  ["192.0.2.0/24", "documentation (192.0.2.0/24)"],
  ["192.88.99.0/24", "6to4 relay (192.88.99.0/24)"],
  ["192.168.0.0/16", "private (192.168.0.0/16)"],
  ["198.18.0.0/15", "benchmarking (198.18.0.0/15)"],
  ["198.51.100.0/24", "documentation (198.51.100.0/24)"],
  ["203.0.113.0/24", "documentation (203.0.113.0/24)"],
  ["224.0.0.0/4", "multicast (224.0.0.0/4)"],
  ["240.0.0.0/4", "reserved (240.0.0.0/4, broadcast)"],
  ["::/128", "unspecified (::)"],
  ["::1/128", "loopback (::1)"],
  ["::ffff:0:0/96", "IPv4-mapped IPv6 (::ffff:0:0/96)"],
  ["::/96", "IPv4-compatible IPv6 (::/96)"],
  ["64:ff9b::/96", "NAT64 (64:ff9b::/96)"],
  ["64:ff9b:1::/48", "NAT64 (64:ff9b:1::/48)"],
  ["100::/64", "discard-only (100::/64)"],
  ["2001::/23", "IETF protocol assignments (2001::/23, Teredo)"],
  ["2001:db8::/32", "documentation (2001:db8::/32)"],
  ["2002::/16", "6to4 (2002::/16)"],
  // Inside 2000::/3, yet not globally reachable (IANA's special-purpose registry, RFC 9637).
  ["3fff::/20", "documentation (3fff::/20)"],
  ["fc00::/7", "unique local (fc00::/7)"],
  ["fe80::/10", "link-local (fe80::/10)"],
  ["fec0::/10", "site-local (fec0::/10)"],
  ["ff00::/8", "multicast (ff00::/8)"],
];

/** Dotted-quad IPv4 → its 32 bits as a bigint; null if not one. */
export function parseIPv4(text: string): bigint | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let value = 0n;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return null;
    value = (value << 8n) | BigInt(Number(part));
  }
  return value;
}

/** IPv6 text (with :: and an optional trailing dotted quad) → its 128 bits; null if not one. */
export function parseIPv6(text: string): bigint | null {
  let s = text;
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  if (s.includes("%")) return null; // zone ids never name a public address
  let tail: bigint | null = null;
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    tail = parseIPv4(s.slice(lastColon + 1));
    if (tail === null) return null;
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const groups = (h: string) => (h === "" ? [] : h.split(":"));
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? head.length !== 8 : missing < 1) return null;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  let value = 0n;
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    value = (value << 16n) | BigInt(parseInt(g, 16));
  }
  if (tail !== null) value = (value & ~0xffffffffn) | tail;
  return value;
}

interface Range {
  family: 4 | 6;
  base: bigint;
  bits: number;
  name: string;
}

const RANGES: Range[] = REFUSED_RANGES.map(([cidr, name]) => {
  const [address, prefix] = cidr.split("/") as [string, string];
  const v4 = parseIPv4(address);
  return v4 !== null
    ? { family: 4, base: v4, bits: Number(prefix), name }
    : { family: 6, base: parseIPv6(address)!, bits: Number(prefix), name };
});

const inRange = (value: bigint, range: Range) => {
  const width = range.family === 4 ? 32 : 128;
  const shift = BigInt(width - range.bits);
  return value >> shift === range.base >> shift;
};

/** The name of the refused range `address` is in, null for a public unicast address, or "not an IP address". */
export function refusedRange(address: string): string | null {
  const v4 = parseIPv4(address);
  if (v4 !== null) return RANGES.find((r) => r.family === 4 && inRange(v4, r))?.name ?? null;
  const v6 = parseIPv6(address);
  if (v6 === null) return "not an IP address";
  const hit = RANGES.find((r) => r.family === 6 && inRange(v6, r));
  if (hit) return hit.name;
  // Only global unicast IPv6 (2000::/3) is ever public.
  if (v6 >> 125n !== 1n) return "reserved IPv6 (outside 2000::/3)";
  return null;
}

/** True for a literal IPv4 or IPv6 address (as the URL parser leaves host names). */
export const isIpLiteral = (host: string) => parseIPv4(host) !== null || parseIPv6(host) !== null;
