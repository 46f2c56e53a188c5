/**
 * The SSRF guard of every outbound HTTP request that workflow code makes for a tenant
 * (host/activities/http.ts). A URL is fetched only if:
 *
 *   - its scheme is http or https, and its port is not 0 or one of fetch's bad ports;
 *   - every address its host name resolves to is a public unicast address (not loopback, private,
 *     link-local, CGNAT, multicast, unspecified, reserved, documentation, IPv4-mapped, NAT64 or
 *     6to4 space), or is allowed by the operator's OUTBOUND_HTTP_ALLOW list;
 *   - the connection goes to an address that was checked: the guard's own DNS lookup answers the
 *     socket's connect, and the socket's peer address is checked again once connected, so a DNS
 *     answer that changes between check and connect (rebinding) cannot reach a refused address;
 *   - a tenant's host name is resolved with c-ares (node:dns Resolver, A and AAAA), not getaddrinfo:
 *     getaddrinfo runs on libuv's thread pool, where a name whose DNS server never answers held a
 *     thread for 10-30 s after the request's deadline, and every other node:dns lookup of the
 *     process (the host's calls to the edge and to LLM providers) queued behind a few of them;
 *   - each redirect is followed by hand (at most MAX_REDIRECTS) and checked the same way.
 *
 * Responses are capped in size (the body is read here, up to maxBytes) and time (one deadline
 * for the whole exchange, redirects and body included). A refusal is an `UrlNotAllowedError`:
 * no request is made, so nothing of the refused address (status, body) can leak.
 *
 * IP literals are parsed by the WHATWG URL parser first, so decimal (2130706433), octal (0177.1),
 * hex (0x7f.0.0.1) and short (127.1) spellings arrive here as their dotted-quad form.
 */
import { lookup as dnsLookup, type LookupAddress, promises as dnsPromises } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { Agent, buildConnector, fetch as undiciFetch, type Dispatcher } from "undici";
import { BodyTooLargeError, readCappedBody } from "../../src/shared/capped-body.ts";
import { FETCH_BAD_PORTS } from "../../src/shared/fetch-bad-ports.ts";
import { REFUSED_RANGES } from "../../src/shared/ip-ranges.ts";

export const URL_NOT_ALLOWED = "url_not_allowed";

export class UrlNotAllowedError extends Error {
  readonly code = URL_NOT_ALLOWED;
  /** Requests made before the refusal (a redirect refused after them): they are recorded and charged like any other. */
  requestsMade = 0;
  constructor(message: string) {
    super(`${URL_NOT_ALLOWED}: ${message}`);
    this.name = "UrlNotAllowedError";
  }
}

function subnet(cidr: string): BlockList {
  const [address, prefix] = cidr.split("/") as [string, string];
  const list = new BlockList();
  list.addSubnet(address, Number(prefix), isIP(address) === 6 ? "ipv6" : "ipv4");
  return list;
}

// Node's BlockList matches IPv4 rules against IPv4-mapped IPv6 addresses and back; each range is
// checked against addresses of its own family only, so the names below are exact.
const REFUSED = REFUSED_RANGES.map(([cidr, name]) => ({ list: subnet(cidr), name, family: isIP(cidr.split("/")[0]!) }));
/** Only global unicast IPv6 (2000::/3) is ever public. */
const GLOBAL_UNICAST_V6 = subnet("2000::/3");

/** The name of the refused range `address` is in, or null for a public unicast address. */
export function refusedRange(address: string): string | null {
  const family = isIP(address);
  if (family === 0) return "not an IP address";
  const type = family === 6 ? "ipv6" : "ipv4";
  for (const range of REFUSED) if (range.family === family && range.list.check(address, type)) return range.name;
  if (family === 6 && !GLOBAL_UNICAST_V6.check(address, "ipv6")) return "reserved IPv6 (outside 2000::/3)";
  return null;
}

/** One OUTBOUND_HTTP_ALLOW entry: a host name or an address range, optionally on one port only. */
export type AllowEntry = { kind: "host"; host: string; port?: number } | { kind: "range"; cidr: string; list: BlockList; port?: number };

/**
 * Parses OUTBOUND_HTTP_ALLOW: comma-separated entries, each a host name (`intranet.example`), an
 * address or CIDR range (`10.1.0.0/16`, `fd00::/8`), optionally followed by `:port`
 * (`127.0.0.1:8790`, `[::1]:8790`, `wiki.internal:8443`). Throws on an entry it cannot read, so a
 * typo stops the host instead of silently allowing nothing (or everything).
 */
export function parseAllowList(text: string | undefined): AllowEntry[] {
  const entries: AllowEntry[] = [];
  for (const raw of (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    let base = raw;
    let port: number | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(raw);
    if (bracketed) {
      base = bracketed[1]!;
      port = bracketed[2] ? Number(bracketed[2]) : undefined;
    } else if ((raw.match(/:/g) ?? []).length === 1) {
      const at = raw.lastIndexOf(":");
      base = raw.slice(0, at);
      port = Number(raw.slice(at + 1));
      if (!/^\d{1,5}$/.test(raw.slice(at + 1))) throw new Error(`OUTBOUND_HTTP_ALLOW: "${raw}" has a bad port`);
    }
    if (port !== undefined && (port < 1 || port > 65535)) throw new Error(`OUTBOUND_HTTP_ALLOW: "${raw}" has a bad port`);
    // Refused before any allow-list is read (checkUrl): such an entry would allow nothing, silently.
    if (port !== undefined && FETCH_BAD_PORTS.has(port)) {
      throw new Error(`OUTBOUND_HTTP_ALLOW: "${raw}" names port ${port}, which outbound requests may not use (another protocol's)`);
    }
    const [address, prefix, ...more] = base.split("/");
    const family = isIP(address ?? "");
    if (family !== 0) {
      // Digits only: Number() would read "" (`10.1.2.3/`) as 0, a range of every address, and "0x8" or "1e1" as others.
      if (more.length > 0 || (prefix !== undefined && !/^\d{1,3}$/.test(prefix)))
        throw new Error(`OUTBOUND_HTTP_ALLOW: "${raw}" has a bad prefix length`);
      const bits = prefix === undefined ? (family === 6 ? 128 : 32) : Number(prefix);
      if (bits > (family === 6 ? 128 : 32)) throw new Error(`OUTBOUND_HTTP_ALLOW: "${raw}" has a bad prefix length`);
      const cidr = `${address}/${bits}`;
      entries.push({ kind: "range", cidr, list: subnet(cidr), port });
    } else if (/^(\d+|0x[0-9a-f]*)$/i.test(base.replace(/\.$/, "").split(".").at(-1) ?? "")) {
      // A URL's host that ends in a number is an IPv4 address (`127.1`, `010.0.0.1`), never this name: it would allow nothing.
      throw new Error(`OUTBOUND_HTTP_ALLOW: "${raw}" is not an address in dotted-quad form, and a host name cannot end in a number`);
    } else if (/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i.test(base)) {
      entries.push({ kind: "host", host: base.toLowerCase().replace(/\.$/, ""), port });
    } else {
      throw new Error(`OUTBOUND_HTTP_ALLOW: cannot read "${raw}" (a host name, an address or a CIDR range, optionally :port)`);
    }
  }
  return entries;
}

export interface OutboundPolicy {
  allow: AllowEntry[];
  /** Largest response body read, in bytes. */
  maxBytes: number;
  /** Deadline of one request, redirects and body included (ms). */
  timeoutMs: number;
  maxRedirects: number;
  /** DNS resolution of every name (tests inject one to play a rebinding resolver); see resolveTenantName by default. */
  lookup?: (hostname: string) => Promise<LookupAddress[]>;
  /** The DNS servers tenants' names are asked of (`address` or `address:port`); the system's (/etc/resolv.conf) by default. Tests point it at a local server. */
  dnsServers?: string[];
}

export const DEFAULT_MAX_BYTES = 5 * 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 30_000;
export const MAX_REDIRECTS = 5;

/** The longest time AbortSignal.timeout (and setTimeout) takes: a larger one throws on every fetch. */
const MAX_TIMEOUT_MS = 2_147_483_647;

/**
 * A whole number from 1 to `max`, or `fallback` when unset. Anything else stops the host at start,
 * as a bad allow-list entry does: a value read loosely failed every fetch later (a timeout of
 * 1500.5 ms, or past AbortSignal.timeout's range), each recorded as a request never made.
 */
function wholeNumberVar(name: string, value: string | undefined, fallback: number, max: number): number {
  if (value === undefined || value.trim() === "") return fallback;
  const n = Number(value.trim());
  if (!/^\d+$/.test(value.trim()) || n < 1 || n > max) throw new Error(`${name} must be a whole number from 1 to ${max}, not "${value}"`);
  return n;
}

export function policyFromEnv(env: NodeJS.ProcessEnv = process.env): OutboundPolicy {
  return {
    allow: parseAllowList(env.OUTBOUND_HTTP_ALLOW),
    maxBytes: wholeNumberVar("OUTBOUND_HTTP_MAX_BYTES", env.OUTBOUND_HTTP_MAX_BYTES, DEFAULT_MAX_BYTES, Number.MAX_SAFE_INTEGER),
    timeoutMs: wholeNumberVar("OUTBOUND_HTTP_TIMEOUT_MS", env.OUTBOUND_HTTP_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS),
    maxRedirects: MAX_REDIRECTS,
  };
}

const stripBrackets = (host: string) => (host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host);

function hostAllowed(policy: OutboundPolicy, hostname: string, port: number): boolean {
  const host = stripBrackets(hostname).toLowerCase().replace(/\.$/, "");
  return policy.allow.some((e) => e.kind === "host" && e.host === host && (e.port === undefined || e.port === port));
}

/** Null if `address` may be connected to on `port`; else why not. */
function addressRefusal(policy: OutboundPolicy, address: string, port: number): string | null {
  const family = isIP(address);
  const allowed = policy.allow.some(
    (e) =>
      e.kind === "range" &&
      (e.port === undefined || e.port === port) &&
      family !== 0 &&
      e.list.check(address, family === 6 ? "ipv6" : "ipv4"),
  );
  return allowed ? null : refusedRange(address);
}

/** Checks a URL before any connection: scheme, and the host if it is an IP literal. */
export function checkUrl(policy: OutboundPolicy, raw: string | URL, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    throw new UrlNotAllowedError(`"${String(raw).slice(0, 200)}" is not a valid URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UrlNotAllowedError(`only http and https URLs may be fetched, not ${url.protocol.replace(/:$/, "")}`);
  }
  // fetch refuses them itself, with an error that reads as a network failure (retried, charged);
  // and a password in a URL would be recorded with the request.
  if (url.username || url.password) throw new UrlNotAllowedError("URLs with a user name or password (user:pass@) may not be fetched");
  const port = portOf(url);
  // fetch refuses these with an error that reads as a network failure (retried, charged) before
  // connecting; port 0 is no server's, and portOf would check it as the scheme's default.
  if (url.port === "0" || FETCH_BAD_PORTS.has(port)) {
    throw new UrlNotAllowedError(`port ${url.port} is not one outbound requests may use (another protocol's port, or 0)`);
  }
  const host = stripBrackets(url.hostname);
  if (isIP(host) !== 0 && !hostAllowed(policy, host, port)) {
    const refusal = addressRefusal(policy, host, port);
    if (refusal) throw new UrlNotAllowedError(`${url.host} is a ${refusal} address, which outbound requests may not reach`);
  }
  return url;
}

const portOf = (url: URL) => Number(url.port) || (url.protocol === "https:" ? 443 : 80);

/**
 * How long a DNS server has to answer one query for a tenant's name on the first try (c-ares
 * doubles it on each later round), and how many tries: a server that never answers fails the
 * lookup (ETIMEOUT, a network error: the step is retried) after about 6 s for each server the
 * system lists (c-ares asks them in turn: about 11 s with two), within the request's default
 * deadline, which also cancels the lookup when it passes first.
 */
export const DNS_TRY_TIMEOUT_MS = 2_000;
export const DNS_TRIES = 2;

/** RFC 6761: `localhost` and the names under it are loopback, whatever a DNS server says (c-ares does not read /etc/hosts). */
const LOOPBACK_ANSWERS: readonly LookupAddress[] = [
  { address: "127.0.0.1", family: 4 },
  { address: "::1", family: 6 },
];

/**
 * The addresses of a tenant's host name, from c-ares: its queries are sockets on the event loop,
 * not a libuv thread held until the system resolver gives up, so a name whose DNS server never
 * answers costs the host nothing but a timer, and `resolver.cancel()` ends it at the request's
 * deadline. A and AAAA are asked together (IPv4 first, as Node's `ipv4first`); one family that
 * fails while the other answers, or is still silent OTHER_FAMILY_WAIT_MS after it, leaves the
 * answered addresses, all of which are checked.
 */
async function resolveTenantName(policy: OutboundPolicy, hostname: string, signal: AbortSignal): Promise<LookupAddress[]> {
  const name = hostname.toLowerCase().replace(/\.$/, "");
  if (name === "localhost" || name.endsWith(".localhost")) return [...LOOPBACK_ANSWERS];
  signal.throwIfAborted();
  const resolver = new dnsPromises.Resolver({ timeout: DNS_TRY_TIMEOUT_MS, tries: DNS_TRIES });
  if (policy.dnsServers) resolver.setServers(policy.dnsServers);
  const cancel = () => resolver.cancel();
  signal.addEventListener("abort", cancel, { once: true });
  let results: [PromiseSettledResult<string[]>, PromiseSettledResult<string[]>];
  try {
    results = await bothFamilies(resolver.resolve4(hostname), resolver.resolve6(hostname), cancel);
  } finally {
    signal.removeEventListener("abort", cancel);
  }
  const [v4, v6] = results;
  const answers: LookupAddress[] = [
    ...(v4.status === "fulfilled" ? v4.value.map((address) => ({ address, family: 4 })) : []),
    ...(v6.status === "fulfilled" ? v6.value.map((address) => ({ address, family: 6 })) : []),
  ];
  if (answers.length > 0) return answers;
  // No address: a refusal when both families say the name has none (ENOTFOUND, ENODATA); a server
  // that failed, timed out or was cancelled is a network error, as EAI_AGAIN was.
  const failures = results.flatMap((r) => (r.status === "rejected" ? [r.reason as NodeJS.ErrnoException] : []));
  const failed = failures.find((e) => !(e.code && NO_SUCH_NAME.has(e.code)));
  if (failed) throw failed;
  return answers; // none: the caller refuses the name
}

/**
 * Once one family has answered with addresses, how long the other still has before the lookup
 * goes on without it. Some resolvers drop AAAA questions and never answer them: waiting for both
 * held every fetch of such a name until c-ares gave up (about 6 s per DNS server), and the step
 * was then retried for nothing. Going on without the late family weakens no check: the socket
 * only ever gets the addresses that answered, each of them checked (RFC 8305's resolution delay
 * is 50 ms; this leaves a slow server more).
 */
export const OTHER_FAMILY_WAIT_MS = 250;

/**
 * The A and AAAA answers, settled: both, or the one that answered with addresses and the other
 * cancelled if it has not answered OTHER_FAMILY_WAIT_MS later (a cancelled query is a rejection).
 */
async function bothFamilies(
  v4: Promise<string[]>,
  v6: Promise<string[]>,
  cancel: () => void,
): Promise<[PromiseSettledResult<string[]>, PromiseSettledResult<string[]>]> {
  const settled = Promise.allSettled([v4, v6]);
  let timer: NodeJS.Timeout | undefined;
  const otherFamilyLate = new Promise<"late">((late) => {
    const answered = (addresses: string[]) => {
      if (addresses.length > 0 && timer === undefined) timer = setTimeout(() => late("late"), OTHER_FAMILY_WAIT_MS);
    };
    for (const family of [v4, v6]) family.then(answered, () => undefined);
  });
  try {
    if ((await Promise.race([settled, otherFamilyLate])) === "late") cancel();
    return await settled;
  } finally {
    clearTimeout(timer);
  }
}

/** Names the operator allows (OUTBOUND_HTTP_ALLOW) keep the system's lookup: /etc/hosts, search domains. */
const systemLookup = (hostname: string) =>
  new Promise<LookupAddress[]>((resolve, reject) =>
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
  );

/**
 * Where a refused name pointed, for the operator only. The refusal a run sees names the host but
 * not the address or its range: workflow input is a tenant's, and answers such as "db.internal
 * resolves to 10.0.0.5" would let it map the host's internal DNS.
 */
function logRefusal(hostname: string, address: string, range: string): void {
  console.warn(JSON.stringify({ level: "warn", message: "outbound request refused", hostname, address, range }));
}

/** Resolver answers that say the name has no address (as opposed to a resolver that failed: EAI_AGAIN, a timeout). */
const NO_SUCH_NAME = new Set(["ENOTFOUND", "ENODATA"]);

/**
 * One refusal for a name that has no address and for one whose address is refused: were they
 * told apart, a tenant could ask which internal names the host's resolver knows.
 */
const unreachableName = (hostname: string) =>
  new UrlNotAllowedError(`${hostname} does not resolve to an address outbound requests may reach`);

/**
 * The socket's lookup: resolves, refuses the host if ANY answer is refused (a mixed answer is
 * the classic rebinding trick), and hands the socket exactly the checked addresses.
 */
function guardedLookup(policy: OutboundPolicy, port: number, signal: AbortSignal): LookupFunction {
  return (hostname, options, callback) => {
    const resolve = async () =>
      policy.lookup
        ? policy.lookup(hostname)
        : hostAllowed(policy, hostname, port)
          ? systemLookup(hostname)
          : resolveTenantName(policy, hostname, signal);
    resolve()
      .catch((err: NodeJS.ErrnoException) => {
        if (err.code && NO_SUCH_NAME.has(err.code)) throw unreachableName(hostname);
        throw err;
      })
      .then((answers) => {
        if (answers.length === 0) throw unreachableName(hostname);
        if (!hostAllowed(policy, hostname, port)) {
          for (const { address } of answers) {
            const refusal = addressRefusal(policy, address, port);
            if (refusal) {
              logRefusal(hostname, address, refusal);
              throw unreachableName(hostname);
            }
          }
        }
        const wanted = options.family === 4 || options.family === 6 ? answers.filter((a) => a.family === options.family) : answers;
        if (wanted.length === 0) throw Object.assign(new Error(`${hostname} has no IPv${options.family} address`), { code: "ENOTFOUND" });
        if (options.all) callback(null, wanted);
        else callback(null, wanted[0]!.address, wanted[0]!.family);
      })
      .catch((err: NodeJS.ErrnoException) => callback(err, "", 0));
  };
}

/**
 * A dispatcher whose sockets only reach allowed addresses: resolution through guardedLookup, and
 * the connected peer checked again (IP literals skip lookup; this also covers them).
 */
function guardedDispatcher(policy: OutboundPolicy, url: URL, signal: AbortSignal): Dispatcher {
  const port = portOf(url);
  const base = buildConnector({ lookup: guardedLookup(policy, port, signal), timeout: policy.timeoutMs } as buildConnector.BuildOptions);
  return new Agent({
    connect: (options, callback) =>
      base(options, (err, socket) => {
        if (err || !socket) return callback(err ?? new Error("no socket"), null);
        const peer = socket.remoteAddress ?? "";
        const refusal = hostAllowed(policy, options.hostname, port) ? null : addressRefusal(policy, peer, port);
        if (refusal) {
          socket.destroy();
          logRefusal(options.hostname, peer, refusal);
          return callback(new UrlNotAllowedError(`${options.hostname} connected to an address outbound requests may not reach`), null);
        }
        callback(null, socket);
      }),
  });
}

function notAllowedIn(err: unknown): UrlNotAllowedError | null {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof UrlNotAllowedError) return e;
  }
  return null;
}

/** The response's body, up to `maxBytes` (ResponseTooLargeError past it). */
async function readCapped(res: Response, maxBytes: number, url: URL): Promise<Uint8Array<ArrayBuffer>> {
  try {
    return await readCappedBody(res, maxBytes);
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw new ResponseTooLargeError(url, maxBytes);
    throw err;
  }
}

export class ResponseTooLargeError extends Error {
  constructor(url: URL, maxBytes: number) {
    super(`the response of ${url.origin} is larger than ${maxBytes} bytes, the most an outbound request may read`);
    this.name = "ResponseTooLargeError";
  }
}

/** The server answered with a status no HTTP response may have (outside 200-599 once 1xx are done with). */
export class InvalidResponseStatusError extends Error {
  constructor(url: URL, status: number) {
    super(`${url.origin} answered with status ${status}, which is not a valid HTTP response status`);
    this.name = "InvalidResponseStatusError";
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Statuses whose response has no body (the Response constructor refuses one). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/** Dropped on a redirect to another origin (the Fetch standard drops `authorization`; cookies and proxy credentials are as private). */
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];
/** Dropped when a redirect turns the request into a body-less GET. */
const BODY_HEADERS = ["content-type", "content-length", "content-encoding", "content-language", "content-location"];

/** The request's headers, names in lower case. */
function headerRecord(init: HeadersInit | undefined): Record<string, string> {
  const record: Record<string, string> = {};
  new Headers(init).forEach((value, name) => {
    record[name] = value;
  });
  return record;
}

function withoutHeaders(headers: Record<string, string>, names: readonly string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !names.includes(name)));
}

export interface GuardedFetchOptions {
  /**
   * Whether the final response's body is wanted (default: always). One that is not is left unread,
   * and the Response has none: a caller that refuses a PDF or a 404 page neither downloads it nor
   * fails on its size instead.
   */
  readBody?: (res: Response) => boolean;
}

/**
 * fetch() through the guard. Resolves to a Response whose body was read in full (within the
 * cap), or left unread when `options.readBody` says so; the final URL is `response.url`. Throws
 * UrlNotAllowedError for a refused URL or redirect, ResponseTooLargeError past the size cap, and
 * fetch's own errors otherwise.
 */
export async function guardedFetch(
  policy: OutboundPolicy,
  input: string,
  init: RequestInit = {},
  options: GuardedFetchOptions = {},
): Promise<Response> {
  const deadline = AbortSignal.timeout(policy.timeoutMs);
  const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
  let url = checkUrl(policy, input);
  let method = (init.method ?? "GET").toUpperCase();
  let body = init.body;
  let headers = headerRecord(init.headers);
  /** Requests a server answered (each redirect's hop, then the last). */
  let answered = 0;
  try {
    return await followRedirects();
  } catch (err) {
    // A redirect refused after servers answered: the requests before it were made.
    if (err instanceof UrlNotAllowedError) err.requestsMade = answered;
    throw err;
  }

  async function followRedirects(): Promise<Response> {
    for (let redirects = 0; ; redirects++) {
      const dispatcher = guardedDispatcher(policy, url, signal);
      try {
        let res: Response;
        try {
          res = (await undiciFetch(url, {
            method,
            headers,
            body: body as string | undefined,
            redirect: "manual",
            signal,
            dispatcher,
          })) as unknown as Response;
        } catch (err) {
          throw notAllowedIn(err) ?? err;
        }
        answered++;
        const location = res.headers.get("location");
        if (REDIRECTS.has(res.status) && location) {
          await res.body?.cancel();
          if (redirects >= policy.maxRedirects) throw new UrlNotAllowedError(`more than ${policy.maxRedirects} redirects`);
          // A Location that is not a URL (or one with user info) is a refusal, not a network error to retry.
          const next = checkUrl(policy, location, url);
          // As fetch does: credentials go to the origin they were meant for, never to one a
          // redirect names; a redirect that turns the request into a GET drops its body's headers.
          if (next.origin !== url.origin) headers = withoutHeaders(headers, CREDENTIAL_HEADERS);
          url = next;
          if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === "POST")) {
            method = "GET";
            body = undefined;
            headers = withoutHeaders(headers, BODY_HEADERS);
          }
          continue;
        }
        // undici passes any three-digit status through; the Response below takes 200-599 only.
        if (res.status < 200 || res.status > 599) {
          await res.body?.cancel();
          throw new InvalidResponseStatusError(url, res.status);
        }
        const wanted = !NULL_BODY_STATUSES.has(res.status) && (options.readBody?.(res) ?? true);
        if (!wanted) await res.body?.cancel();
        const bytes = wanted ? await readCapped(res, policy.maxBytes, url) : null;
        // No statusText: a server's reason phrase may be any bytes (non-ASCII, control characters),
        // which the Response constructor refuses, and nothing reads it.
        const out = new Response(bytes, {
          status: res.status,
          headers: res.headers,
        });
        Object.defineProperty(out, "url", { value: url.href });
        return out;
      } finally {
        void dispatcher.close().catch(() => {});
      }
    }
  }
}
