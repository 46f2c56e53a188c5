/**
 * Which URLs a webhook endpoint may have. Checked when the endpoint is registered and again
 * before every delivery attempt (the configuration may have changed):
 *
 * - https only; plain http only for 127.0.0.1 (any port) and only when WEBHOOK_ALLOW_LOOPBACK_HTTP
 *   is "1" (`npm run dev` sets it, a deployed Worker does not);
 * - no credentials in the URL, no fragment, not port 0 nor another protocol's port (fetch's bad
 *   ports, src/shared/fetch-bad-ports.ts), at most 2048 characters;
 * - the host is a DNS name or a public unicast IP literal: private, loopback, link-local, CGNAT,
 *   documentation, multicast and reserved ranges are refused (src/shared/ip-ranges.ts, the same
 *   ranges as the host's outbound HTTP guard); so are names that only resolve inside a network
 *   (`localhost`, `*.localhost`, `*.local`, `*.internal`, `*.lan`, `*.home.arpa`, single labels);
 *   so are names past DNS's limits (253 characters, 63 a label), which no lookup can answer.
 *
 * Where a name points is checked after this, over DNS (address-check.ts). Deliveries never follow
 * redirects (a 3xx is a failed attempt), so a public endpoint cannot bounce us elsewhere.
 */
import { FETCH_BAD_PORTS } from "../shared/fetch-bad-ports.ts";
import { isIpLiteral, refusedRange } from "../shared/ip-ranges.ts";

export const MAX_WEBHOOK_URL_LENGTH = 2048;
/** A DNS name's limits, in ASCII (the URL parser has turned an internationalized name into `xn--` labels). */
const MAX_DNS_NAME_LENGTH = 253;
const MAX_DNS_LABEL_LENGTH = 63;

export interface UrlPolicy {
  allowLoopbackHttp: boolean;
}

export const urlPolicyFrom = (env: { WEBHOOK_ALLOW_LOOPBACK_HTTP?: string }): UrlPolicy => ({
  allowLoopbackHttp: env.WEBHOOK_ALLOW_LOOPBACK_HTTP === "1",
});

const INTERNAL_NAME = /(^|\.)(localhost|local|internal|intranet|lan|home\.arpa|localdomain|corp)$/i;

/** null if the URL may receive webhooks, else why not (a sentence for the caller). */
export function webhookUrlProblem(text: string, policy: UrlPolicy): string | null {
  if (text.length > MAX_WEBHOOK_URL_LENGTH) return `the URL is longer than ${MAX_WEBHOOK_URL_LENGTH} characters`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "not an absolute URL";
  }
  // What is stored and fetched is the normalized form, which percent-encoding can make longer.
  if (url.href.length > MAX_WEBHOOK_URL_LENGTH) return `the URL is longer than ${MAX_WEBHOOK_URL_LENGTH} characters once normalized`;
  if (url.username || url.password) return "the URL must not carry credentials";
  // Port 0 names no port: nothing can ever be sent there (the parser keeps it as given).
  if (url.port === "0") return "the URL's port 0 names no port";
  // workerd's fetch connects to these where browsers and Node refuse: every delivery would knock on
  // a mail or IRC server (whatever the scheme), and its attempt log would say how it answered.
  if (FETCH_BAD_PORTS.has(Number(url.port))) {
    return `the URL's port ${url.port} is another protocol's (SMTP, SSH, IRC, ...: a port fetch never connects to); use an HTTPS server's port`;
  }
  // An empty fragment ("…/h#") has no `hash`, but stays in the URL.
  if (url.hash || url.href.endsWith("#")) return "the URL must not have a fragment";
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const loopbackDev = policy.allowLoopbackHttp && host === "127.0.0.1";
  if (url.protocol === "http:") {
    if (!loopbackDev) return "webhook URLs must use https (http only for 127.0.0.1 where the configuration allows it)";
  } else if (url.protocol !== "https:") {
    return "webhook URLs must use https";
  }
  if (loopbackDev) return null;
  if (isIpLiteral(host)) {
    const refused = refusedRange(host);
    return refused ? `the address is not public: ${refused}` : null;
  }
  // Any number of trailing dots name the same host as none ("localhost.." is localhost).
  const name = host.replace(/\.+$/, "");
  const labels = name.split(".");
  if (labels.includes("")) return `"${host}" has an empty label`;
  // DNS's own limits (RFC 1035): no resolver can look such a name up, so it never will resolve.
  if (name.length > MAX_DNS_NAME_LENGTH) return `the host name is longer than ${MAX_DNS_NAME_LENGTH} characters`;
  if (labels.some((label) => label.length > MAX_DNS_LABEL_LENGTH))
    return `a label of the host name is longer than ${MAX_DNS_LABEL_LENGTH} characters`;
  if (!name.includes(".") || INTERNAL_NAME.test(name)) return `"${host}" is not a public host name`;
  return null;
}
