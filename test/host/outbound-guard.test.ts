/**
 * Security cases of the SSRF guard (host/activities/outbound-guard.ts), the only way workflow
 * code reaches the network for a tenant: every refused range, the spellings of an address that
 * the URL parser normalises, names that resolve to loopback, redirects into private space, DNS
 * rebinding, and the size and time caps. Real sockets on 127.0.0.x stand in for internal services;
 * each records what reached it, so "refused" also means "no request was made".
 */
import { lookup as systemLookup } from "node:dns";
import { createSocket, type Socket } from "node:dgram";
import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  checkUrl,
  DNS_TRIES,
  DNS_TRY_TIMEOUT_MS,
  guardedFetch,
  InvalidResponseStatusError,
  type OutboundPolicy,
  parseAllowList,
  policyFromEnv,
  ResponseTooLargeError,
  refusedRange,
  UrlNotAllowedError,
} from "../../host/activities/outbound-guard.ts";

const policy = (over: Partial<OutboundPolicy> = {}): OutboundPolicy => ({
  allow: [],
  maxBytes: 1024 * 1024,
  timeoutMs: 5_000,
  maxRedirects: 5,
  ...over,
});

interface Fixture {
  server: Server;
  port: number;
  hits: string[];
}

async function listen(host: string, handler: (path: string, res: import("node:http").ServerResponse) => void, port = 0): Promise<Fixture> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? "");
    handler(req.url ?? "", res);
  });
  await new Promise<void>((ok) => server.listen(port, host, ok));
  return { server, port: (server.address() as AddressInfo).port, hits };
}

const SECRET_BODY = "internal-secret-body";
let secret: Fixture; // an "internal service" on 127.0.0.1
let publicSite: Fixture; // stands in for a public site: 127.0.0.2, allowed by the tests' policies
let rebound: Fixture; // 127.0.0.1 on the public site's port, where a rebinding DNS answer points

beforeAll(async () => {
  secret = await listen("127.0.0.1", (_path, res) => res.end(SECRET_BODY));
  publicSite = await listen("127.0.0.2", (path, res) => {
    const to = new URL(path, "http://x").searchParams.get("to");
    if (path.startsWith("/redirect") && to) {
      res.writeHead(302, { location: to }).end();
    } else if (path === "/loop") {
      res.writeHead(301, { location: "/loop" }).end();
    } else if (path === "/big") {
      res.writeHead(200, { "content-length": String(2 * 1024 * 1024) }).end(Buffer.alloc(2 * 1024 * 1024, 97));
    } else if (path === "/big-chunked") {
      res.writeHead(200);
      for (let i = 0; i < 32; i++) res.write(Buffer.alloc(64 * 1024, 98));
      res.end();
    } else if (path.startsWith("/status/")) {
      res.writeHead(Number(path.slice("/status/".length))).end();
    } else if (path === "/slow") {
      setTimeout(() => res.end("late"), 3_000);
    } else {
      res.end("public page");
    }
  });
  rebound = await listen("127.0.0.1", (_path, res) => res.end(SECRET_BODY), publicSite.port);
});

afterAll(() => {
  for (const f of [secret, publicSite, rebound]) f?.server.closeAllConnections();
  for (const f of [secret, publicSite, rebound]) f?.server.close();
});

/** The tests' "public internet": 127.0.0.2 only, on the public site's port only. */
const publicOnly = () => policy({ allow: parseAllowList(`127.0.0.2:${publicSite.port}`) });

async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UrlNotAllowedError);
  expect((err as UrlNotAllowedError).code).toBe("url_not_allowed");
  return (err as Error).message;
}

describe("outbound HTTP guard: address ranges", () => {
  it.each([
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["10.0.0.1", "private"],
    ["10.255.255.255", "private"],
    ["100.64.0.1", "carrier-grade NAT"],
    ["100.127.255.254", "carrier-grade NAT"],
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["169.254.169.254", "link-local"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.0.0.8", "IETF"],
    ["192.0.2.1", "documentation"],
    ["192.168.1.1", "private"],
    ["198.18.0.1", "benchmarking"],
    ["224.0.0.251", "multicast"],
    ["239.255.255.250", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "reserved"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["::ffff:127.0.0.1", "IPv4-mapped"],
    ["::ffff:8.8.8.8", "IPv4-mapped"],
    ["::127.0.0.1", "IPv4-compatible"],
    ["64:ff9b::a9fe:a9fe", "NAT64"],
    ["2002:7f00:1::", "6to4"],
    ["2001:0:4136:e378::1", "Teredo"],
    ["fc00::1", "unique local"],
    ["fd12:3456::1", "unique local"],
    ["fe80::1", "link-local"],
    ["febf::1", "link-local"],
    ["fec0::1", "site-local"],
    ["ff02::1", "multicast"],
    ["ff0e::1", "multicast"],
    ["4000::1", "reserved IPv6"],
    ["3fff::1", "documentation"],
    ["3fff:fff:ffff::1", "documentation"],
  ])("refuses %s (%s)", (address, name) => {
    expect(refusedRange(address)).toContain(name);
  });

  it.each([
    "8.8.8.8",
    "93.184.216.34",
    "1.1.1.1",
    "100.63.255.255",
    "100.128.0.1",
    "172.32.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "3fff:1000::1",
  ])("lets the public address %s through", (address) => {
    expect(refusedRange(address)).toBeNull();
  });
});

describe("outbound HTTP guard: URLs", () => {
  it.each([
    ["http://127.0.0.1/", "loopback"],
    ["http://2130706433/", "loopback"], // decimal
    ["http://0177.0.0.1/", "loopback"], // octal
    ["http://0x7f.0.0.1/", "loopback"], // hex
    ["http://0x7f000001/", "loopback"], // one hex number
    ["http://127.1/", "loopback"], // short form
    ["http://017700000001/", "loopback"], // one octal number
    ["http://0/", "unspecified"],
    ["http://[::1]:8788/health", "loopback"],
    ["http://[::ffff:127.0.0.1]/", "IPv4-mapped"],
    ["http://[::ffff:7f00:1]/", "IPv4-mapped"],
    ["http://[0:0:0:0:0:ffff:169.254.169.254]/", "IPv4-mapped"],
    ["http://169.254.169.254/latest/meta-data/", "link-local"],
    ["http://0xa9fea9fe/", "link-local"],
    ["https://10.0.0.5/", "private"],
    ["http://[fd00::5]/", "unique local"],
    ["http://[fe80::1]/", "link-local"],
    ["http://100.100.100.200/", "carrier-grade NAT"],
    ["http://224.0.0.1/", "multicast"],
  ])("refuses %s before connecting", async (url, name) => {
    expect(() => checkUrl(policy(), url)).toThrow(UrlNotAllowedError);
    expect(await refusal(guardedFetch(policy(), url))).toContain(name);
  });

  it("refuses URLs with user info before connecting: a refusal of the step, not a network error retried and charged", async () => {
    const hits = publicSite.hits.length;
    for (const url of [`http://user:pw@127.0.0.2:${publicSite.port}/`, `http://user@127.0.0.2:${publicSite.port}/`]) {
      expect(await refusal(guardedFetch(publicOnly(), url))).toContain("user name or password");
    }
    expect(publicSite.hits.length).toBe(hits);
  });

  it.each([
    "file:///etc/passwd",
    "ftp://example.com/",
    "gopher://127.0.0.1:6379/_INFO",
    "data:text/plain,hi",
    "javascript:alert(1)",
    "not a url",
  ])("refuses %s (only http and https)", async (url) => {
    await refusal(guardedFetch(policy(), url));
  });

  it("security: a port fetch never connects to (the Fetch standard's bad ports: SMTP, IRC...; and port 0) is refused before connecting, on a redirect too, not a network error retried and charged", async () => {
    // Every port of 127.0.0.2 allowed: only the port can be refused.
    const anyPort = policy({ allow: parseAllowList("127.0.0.2") });
    for (const port of [25, 6667, 10080, 0]) {
      expect(await refusal(guardedFetch(anyPort, `http://127.0.0.2:${port}/`)), String(port)).toContain(`port ${port}`);
    }
    const to = "http://127.0.0.2:25/";
    const err = await guardedFetch(anyPort, `http://127.0.0.2:${publicSite.port}/redirect?to=${encodeURIComponent(to)}`).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UrlNotAllowedError);
    expect((err as UrlNotAllowedError).requestsMade).toBe(1);
    // Ports fetch connects to are not refused.
    expect((await guardedFetch(anyPort, `http://127.0.0.2:${publicSite.port}/page`)).status).toBe(200);
  });

  it("refuses the internal service by its address, and no request reaches it", async () => {
    const message = await refusal(guardedFetch(policy(), `http://127.0.0.1:${secret.port}/health`));
    expect(message).not.toContain(SECRET_BODY);
    expect(secret.hits).toEqual([]);
  });

  it("refuses a DNS name that resolves to 127.0.0.1 (localhost, loopback by RFC 6761)", async () => {
    const message = await refusal(guardedFetch(policy(), `http://localhost:${secret.port}/health`));
    expect(message).toMatch(/localhost does not resolve to an address outbound requests may reach/);
    expect(secret.hits).toEqual([]);
  });

  it("a refusal never tells the tenant where an internal name points (the operator's log does)", async () => {
    const warnings: string[] = [];
    const warn = vi.spyOn(console, "warn").mockImplementation((line: string) => void warnings.push(line));
    try {
      const lookup = async () => [{ address: "10.1.2.3", family: 4 }];
      const message = await refusal(guardedFetch(policy({ lookup }), "http://db.internal.test/"));
      expect(message).toContain("db.internal.test");
      expect(message).not.toMatch(/10\.1\.2\.3|private|10\.0\.0\.0/);
    } finally {
      warn.mockRestore();
    }
    expect(warnings.map((w) => JSON.parse(w))).toContainEqual(
      expect.objectContaining({ message: "outbound request refused", hostname: "db.internal.test", address: "10.1.2.3" }),
    );
  });

  it("a name with no address is refused in the same words as one that points inside: a tenant cannot ask which internal names exist", async () => {
    const noSuchName = async () => Promise.reject(Object.assign(new Error("getaddrinfo ENOTFOUND"), { code: "ENOTFOUND" }));
    const noAddress = async () => Promise.reject(Object.assign(new Error("queryA ENODATA"), { code: "ENODATA" }));
    const empty = async () => [];
    const inside = async () => [{ address: "10.1.2.3", family: 4 }];
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      const messages = [];
      for (const lookup of [noSuchName, noAddress, empty, inside])
        messages.push(await refusal(guardedFetch(policy({ lookup }), "http://db.internal.test/")));
      expect(new Set(messages)).toEqual(
        new Set(["url_not_allowed: db.internal.test does not resolve to an address outbound requests may reach"]),
      );
    } finally {
      warn.mockRestore();
    }
  });

  it("a resolver that fails for now (EAI_AGAIN) is a network error, retried, not a refusal", async () => {
    const lookup = async () => Promise.reject(Object.assign(new Error("getaddrinfo EAI_AGAIN"), { code: "EAI_AGAIN" }));
    const err = await guardedFetch(policy({ lookup }), "http://flaky.test/").then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).not.toBeInstanceOf(UrlNotAllowedError);
    expect(err).toBeInstanceOf(Error);
  });

  it("refuses a name any of whose addresses is private (a mixed DNS answer)", async () => {
    const lookup = async () => [
      { address: "127.0.0.2", family: 4 },
      { address: "127.0.0.1", family: 4 },
    ];
    const p = policy({ allow: parseAllowList("127.0.0.2"), lookup });
    await refusal(guardedFetch(p, `http://mixed.test:${secret.port}/`));
    expect(secret.hits).toEqual([]);
  });
});

describe("outbound HTTP guard: redirects, rebinding, caps, allow-list", () => {
  it("fetches an allowed address, and the body arrives", async () => {
    const res = await guardedFetch(publicOnly(), `http://127.0.0.2:${publicSite.port}/page`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("public page");
  });

  it("checks every redirect: one to a private address is refused and never followed", async () => {
    for (const to of [
      `http://127.0.0.1:${secret.port}/health`,
      `http://localhost:${secret.port}/`,
      "http://169.254.169.254/latest/meta-data/",
      `http://2130706433:${secret.port}/`,
    ]) {
      const message = await refusal(
        guardedFetch(publicOnly(), `http://127.0.0.2:${publicSite.port}/redirect?to=${encodeURIComponent(to)}`),
      );
      expect(message).not.toContain(SECRET_BODY);
    }
    expect(secret.hits).toEqual([]);
  });

  it("a redirect to a Location that is not a URL, or that carries user info, is a refusal, not a network error", async () => {
    for (const to of ["http://[::1", `http://u:p@127.0.0.2:${publicSite.port}/`]) {
      await refusal(guardedFetch(publicOnly(), `http://127.0.0.2:${publicSite.port}/redirect?to=${encodeURIComponent(to)}`));
    }
  });

  it("follows a redirect to an allowed address", async () => {
    const to = `http://127.0.0.2:${publicSite.port}/landing`;
    const res = await guardedFetch(publicOnly(), `http://127.0.0.2:${publicSite.port}/redirect?to=${encodeURIComponent(to)}`);
    expect(await res.text()).toBe("public page");
    expect(res.url).toBe(to);
  });

  it("security: credentials never follow a redirect to another origin; a same-origin redirect keeps them", async () => {
    const seen: Array<{ path: string; authorization?: string; cookie?: string }> = [];
    const other = createServer((req, res) => {
      seen.push({ path: req.url ?? "", authorization: req.headers.authorization, cookie: req.headers.cookie });
      const to = new URL(req.url ?? "/", "http://x").searchParams.get("to");
      if (to) res.writeHead(302, { location: to }).end();
      else res.end("other origin");
    });
    await new Promise<void>((ok) => other.listen(0, "127.0.0.3", ok));
    try {
      const otherPort = (other.address() as AddressInfo).port;
      const p = policy({ allow: parseAllowList(`127.0.0.2:${publicSite.port},127.0.0.3:${otherPort}`) });
      const headers = { authorization: "Bearer tenant-token", cookie: "session=1", "x-trace": "t" };
      const elsewhere = `http://127.0.0.3:${otherPort}/landing`;
      const res = await guardedFetch(p, `http://127.0.0.2:${publicSite.port}/redirect?to=${encodeURIComponent(elsewhere)}`, { headers });
      expect(await res.text()).toBe("other origin");
      expect(seen).toEqual([{ path: "/landing", authorization: undefined, cookie: undefined }]);
      // A redirect within one origin keeps them.
      seen.length = 0;
      await guardedFetch(p, `http://127.0.0.3:${otherPort}/redirect?to=%2Fhome`, { headers });
      expect(seen.map((r) => [r.path, r.authorization, r.cookie])).toEqual([
        ["/redirect?to=%2Fhome", "Bearer tenant-token", "session=1"],
        ["/home", "Bearer tenant-token", "session=1"],
      ]);
    } finally {
      other.close();
    }
  });

  it("stops after at most 5 redirects", async () => {
    const before = publicSite.hits.length;
    const err = await guardedFetch(publicOnly(), `http://127.0.0.2:${publicSite.port}/loop`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UrlNotAllowedError);
    expect((err as Error).message).toMatch(/more than 5 redirects/);
    expect(publicSite.hits.length - before).toBe(6);
    // The requests made before the refusal, for the run's record (http.ts).
    expect((err as UrlNotAllowedError).requestsMade).toBe(6);
  });

  it("connects to the address it checked: a rebinding DNS answer cannot reach loopback", async () => {
    // Odd answers: the allowed 127.0.0.2; even answers: 127.0.0.1 (same port). A guard that
    // resolved once to check and again to connect would check .2 and reach .1 on the first fetch.
    let answers = 0;
    const lookup = async () => [{ address: ++answers % 2 === 1 ? "127.0.0.2" : "127.0.0.1", family: 4 }];
    const p = policy({ allow: parseAllowList(`127.0.0.2:${publicSite.port}`), lookup });
    const first = await guardedFetch(p, `http://rebind.test:${publicSite.port}/page`);
    expect(await first.text()).toBe("public page");
    expect(answers).toBe(1);
    await refusal(guardedFetch(p, `http://rebind.test:${publicSite.port}/page`));
    expect(rebound.hits).toEqual([]);
  });

  it("caps the response size, declared or streamed", async () => {
    const p = { ...publicOnly(), maxBytes: 1024 * 1024 };
    await expect(guardedFetch(p, `http://127.0.0.2:${publicSite.port}/big`)).rejects.toBeInstanceOf(ResponseTooLargeError);
    await expect(guardedFetch(p, `http://127.0.0.2:${publicSite.port}/big-chunked`)).rejects.toBeInstanceOf(ResponseTooLargeError);
  });

  it("a hostile status: 205 answers with no body (not a crash); one outside 200-599 is InvalidResponseStatusError (a non-retryable failure of the step)", async () => {
    const reset = await guardedFetch(publicOnly(), `http://127.0.0.2:${publicSite.port}/status/205`);
    expect([reset.status, await reset.text()]).toEqual([205, ""]);
    await expect(guardedFetch(publicOnly(), `http://127.0.0.2:${publicSite.port}/status/700`)).rejects.toBeInstanceOf(
      InvalidResponseStatusError,
    );
  });

  it("caps the time of a request", async () => {
    const started = Date.now();
    await expect(guardedFetch({ ...publicOnly(), timeoutMs: 300 }, `http://127.0.0.2:${publicSite.port}/slow`)).rejects.toThrow(
      /abort|timeout/i,
    );
    expect(Date.now() - started).toBeLessThan(2_500);
  });

  it("allow-list entries: host names, ranges and ports, and nothing more", async () => {
    const byName = policy({ allow: parseAllowList(`localhost:${secret.port}`) });
    expect(await (await guardedFetch(byName, `http://localhost:${secret.port}/`)).text()).toBe(SECRET_BODY);
    // The name is allowed, not the address behind it, and only on its port.
    await refusal(guardedFetch(byName, `http://127.0.0.1:${secret.port}/`));
    await refusal(guardedFetch(byName, `http://localhost:${publicSite.port}/`));
    const byRange = policy({ allow: parseAllowList("127.0.0.0/30") });
    expect(await (await guardedFetch(byRange, `http://127.0.0.2:${publicSite.port}/page`)).text()).toBe("public page");
    await refusal(guardedFetch(byRange, "http://10.0.0.1/"));
    expect(
      parseAllowList(" wiki.internal , 10.1.0.0/16, [fd00::1]:8443, fd00::/8 ").map((e) => (e.kind === "host" ? e.host : e.cidr)),
    ).toEqual(["wiki.internal", "10.1.0.0/16", "fd00::1/128", "fd00::/8"]);
    for (const bad of ["http://x", "10.0.0.0/33", "host:99999", "a b"]) expect(() => parseAllowList(bad)).toThrow(/OUTBOUND_HTTP_ALLOW/);
  });

  it("a response whose reason phrase is not plain ASCII (UTF-8, Latin-1, control characters) is read like any other, not a failure retried and charged", async () => {
    const phrases: Record<string, Buffer> = {
      utf8: Buffer.from("成功", "utf8"),
      latin1: Buffer.from("Tr\xe8s bien", "latin1"),
      control: Buffer.from("O\x01K", "latin1"),
    };
    const raw = createNetServer((socket) => {
      socket.on("error", () => undefined);
      socket.once("data", (request) => {
        const phrase = phrases[request.toString().split(" ")[1]!.slice(1)] ?? Buffer.from("OK");
        socket.end(
          Buffer.concat([Buffer.from("HTTP/1.1 200 "), phrase, Buffer.from("\r\nContent-Length: 4\r\nConnection: close\r\n\r\npage")]),
        );
      });
    });
    await new Promise<void>((r) => raw.listen(0, "127.0.0.2", r));
    const rawPort = (raw.address() as AddressInfo).port;
    try {
      for (const name of Object.keys(phrases)) {
        const res = await guardedFetch(policy({ allow: parseAllowList(`127.0.0.2:${rawPort}`) }), `http://127.0.0.2:${rawPort}/${name}`);
        expect([name, res.status, await res.text()]).toEqual([name, 200, "page"]);
      }
    } finally {
      raw.close();
    }
  });

  it("a size or time limit that is not a whole number in range stops the host at start (it failed every fetch later)", () => {
    for (const [name, value] of [
      ["OUTBOUND_HTTP_TIMEOUT_MS", "1500.5"],
      ["OUTBOUND_HTTP_TIMEOUT_MS", "1e10"],
      ["OUTBOUND_HTTP_TIMEOUT_MS", "5000000000"],
      ["OUTBOUND_HTTP_TIMEOUT_MS", "0"],
      ["OUTBOUND_HTTP_TIMEOUT_MS", "-5"],
      ["OUTBOUND_HTTP_MAX_BYTES", "abc"],
      ["OUTBOUND_HTTP_MAX_BYTES", "Infinity"],
    ] as const) {
      expect(() => policyFromEnv({ [name]: value }), `${name}=${value}`).toThrow(new RegExp(`${name} must be a whole number`));
    }
    expect(policyFromEnv({ OUTBOUND_HTTP_TIMEOUT_MS: "2500", OUTBOUND_HTTP_MAX_BYTES: " 1024 " })).toMatchObject({
      timeoutMs: 2500,
      maxBytes: 1024,
    });
    expect(policyFromEnv({ OUTBOUND_HTTP_TIMEOUT_MS: "" })).toMatchObject({ timeoutMs: 30_000, maxBytes: 5 * 1024 * 1024 });
  });

  it("security: an allow-list entry it cannot read exactly stops the host, never allows everything (an empty prefix read as /0) or nothing", async () => {
    // `10.1.2.3/` read as /0 allowed every IPv4 address; `fd00::1/` as ::/0, IPv4 included (127.0.0.1 was fetched).
    for (const bad of [
      "10.1.2.3/",
      "fd00::1/",
      "10.0.0.0/8/99",
      "10.0.0.0/0x8",
      "10.0.0.0/ 8",
      "10.0.0.0/1e1",
      "127.1",
      "010.0.0.1",
      "a.0x7f",
    ]) {
      expect(() => parseAllowList(bad), bad).toThrow(/OUTBOUND_HTTP_ALLOW/);
    }
    expect(parseAllowList("10.0.0.0/08, 10.0.0.0/0").map((e) => (e.kind === "range" ? e.cidr : e.host))).toEqual([
      "10.0.0.0/8",
      "10.0.0.0/0",
    ]);
    expect(parseAllowList("host-1.example.com.:443")).toMatchObject([{ kind: "host", host: "host-1.example.com", port: 443 }]);
  });

  it("an allow-list entry on a port no outbound request may use (a fetch bad port such as SMTP's 25) stops the host: it would allow nothing", () => {
    for (const bad of ["127.0.0.1:25", "[::1]:6667", "mail.intranet.example:587", "10.0.0.0/8:22"]) {
      expect(() => parseAllowList(bad), bad).toThrow(/OUTBOUND_HTTP_ALLOW: ".*" names port \d+, which outbound requests may not use/);
    }
    expect(parseAllowList("127.0.0.1:8790")).toMatchObject([{ kind: "range", port: 8790 }]);
  });
});

/** A DNS server's answer to one question: addresses (none: NODATA), "nxdomain", or "silent" (never answers). */
type DnsAnswer = string[] | "nxdomain" | "silent";

interface DnsFixture {
  socket: Socket;
  server: string;
  /** The questions asked, as "name A" / "name AAAA", in order. */
  questions: string[];
}

/** An IPv6 address's 16 bytes (`::` expanded). */
const ipv6Bytes = (address: string): Buffer => {
  const [head, tail = ""] = address.split("::") as [string, string?];
  const words = (part: string) => (part ? part.split(":").map((w) => Number.parseInt(w, 16)) : []);
  const [h, t] = [words(head), words(tail)];
  const all = address.includes("::") ? [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
  const out = Buffer.alloc(16);
  for (const [i, w] of all.entries()) out.writeUInt16BE(w, i * 2);
  return out;
};

/** A tiny authoritative DNS server on 127.0.0.1 (UDP), answering A and AAAA questions as `answer` says. */
async function dnsServer(answer: (name: string, type: "A" | "AAAA") => DnsAnswer): Promise<DnsFixture> {
  const questions: string[] = [];
  const socket = createSocket("udp4");
  socket.on("message", (query, peer) => {
    const labels: string[] = [];
    let at = 12;
    while (query[at]! > 0) {
      labels.push(query.subarray(at + 1, at + 1 + query[at]!).toString());
      at += query[at]! + 1;
    }
    const qtype = query.readUInt16BE(at + 1);
    const question = query.subarray(12, at + 5);
    const name = labels.join(".").toLowerCase();
    const type = qtype === 28 ? "AAAA" : "A";
    questions.push(`${name} ${type}`);
    const said = qtype === 1 || qtype === 28 ? answer(name, type) : [];
    if (said === "silent") return;
    const records = said === "nxdomain" ? [] : said;
    const header = Buffer.alloc(12);
    header.writeUInt16BE(query.readUInt16BE(0), 0); // the query's id
    header.writeUInt16BE(0x8180 | (said === "nxdomain" ? 3 : 0), 2); // a response, recursion available; NXDOMAIN or NOERROR
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(records.length, 6);
    const rrs = records.map((address) => {
      const data = type === "A" ? Buffer.from(address.split(".").map(Number)) : ipv6Bytes(address);
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // the question's name
      rr.writeUInt16BE(qtype, 2);
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(data.length, 10);
      return Buffer.concat([rr, data]);
    });
    socket.send(Buffer.concat([header, question, ...rrs]), peer.port, peer.address);
  });
  await new Promise<void>((ok) => socket.bind(0, "127.0.0.1", ok));
  return { socket, server: `127.0.0.1:${socket.address().port}`, questions };
}

describe("outbound HTTP guard: DNS", () => {
  it("security: a tenant's name is resolved off libuv's thread pool and its lookup ends with the request's deadline: a DNS server that never answers holds up neither the host's other lookups nor anything past the deadline", async () => {
    const dns = await dnsServer(() => "silent");
    try {
      const p = policy({ timeoutMs: 300, dnsServers: [dns.server] });
      const started = Date.now();
      // More hostile names than libuv has threads for lookups (half its 4-thread pool).
      const failures = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          guardedFetch(p, `http://hang-${i}.test/`).then(
            () => null,
            (e: unknown) => e,
          ),
        ),
      );
      for (const err of failures) {
        // A network error (the step is retried), not a refusal: the name may exist.
        expect(err).toBeInstanceOf(Error);
        expect(err).not.toBeInstanceOf(UrlNotAllowedError);
      }
      expect(Date.now() - started).toBeLessThan(2_000);
      // The guard asked the DNS server for both families of every name.
      for (let i = 0; i < 6; i++) expect(dns.questions).toEqual(expect.arrayContaining([`hang-${i}.test A`, `hang-${i}.test AAAA`]));
      // The host's own lookups (node:dns lookup, as fetch makes them) answer at once.
      const before = Date.now();
      await new Promise<void>((ok, fail) => systemLookup("localhost", (err) => (err ? fail(err) : ok())));
      expect(Date.now() - before).toBeLessThan(1_000);
      // The lookups were cancelled at the deadline: no query is tried again after it.
      const asked = dns.questions.length;
      await new Promise((r) => setTimeout(r, DNS_TRY_TIMEOUT_MS + 500));
      expect(dns.questions.length).toBe(asked);
    } finally {
      dns.socket.close();
    }
  });

  it("a DNS server that never answers fails the lookup after its tries (a network error, retried), within a long deadline", async () => {
    const dns = await dnsServer(() => "silent");
    try {
      const started = Date.now();
      const err = await guardedFetch(policy({ timeoutMs: 60_000, dnsServers: [dns.server] }), "http://hang.test/").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).not.toBeInstanceOf(UrlNotAllowedError);
      // c-ares doubles a server's time on each later try.
      expect(Date.now() - started).toBeLessThan(DNS_TRY_TIMEOUT_MS * (2 ** DNS_TRIES - 1) + 2_000);
    } finally {
      dns.socket.close();
    }
  });

  it("a family whose DNS answer never comes does not hold up the other's: a public A answer with a silent AAAA (a resolver that drops AAAA questions) is fetched at once, not after the DNS timeout; so is the reverse", async () => {
    const zone: Record<string, Partial<Record<"A" | "AAAA", DnsAnswer>>> = {
      "no-aaaa.test": { A: ["127.0.0.2"], AAAA: "silent" },
      "no-a.test": { A: "silent", AAAA: ["::1"] },
    };
    const dns = await dnsServer((name, type) => zone[name]?.[type] ?? "nxdomain");
    // The public site's stand-in on IPv6 loopback too, on its port.
    const publicSiteV6 = await listen("::1", (_path, res) => res.end("public page"), publicSite.port);
    try {
      const p = policy({
        timeoutMs: 60_000,
        allow: parseAllowList(`127.0.0.2:${publicSite.port},[::1]:${publicSite.port}`),
        dnsServers: [dns.server],
      });
      for (const host of ["no-aaaa.test", "no-a.test"]) {
        const started = Date.now();
        const res = await guardedFetch(p, `http://${host}:${publicSite.port}/page`);
        expect(await res.text(), host).toBe("public page");
        // Well before c-ares would give up on the silent family (its first try alone is DNS_TRY_TIMEOUT_MS).
        expect(Date.now() - started, host).toBeLessThan(DNS_TRY_TIMEOUT_MS);
      }
    } finally {
      publicSiteV6.server.close();
      dns.socket.close();
    }
  });

  it("security: every A and AAAA answer is checked and the socket connects only to a checked address; localhost names are loopback without asking DNS; allow-listed names keep the system's lookup (/etc/hosts)", async () => {
    const zone: Record<string, Partial<Record<"A" | "AAAA", DnsAnswer>>> = {
      "public.test": { A: ["127.0.0.2"], AAAA: [] },
      "mixed.test": { A: ["127.0.0.2"], AAAA: ["::1"] },
      "inside.test": { A: [], AAAA: ["fd00::5"] },
      "nowhere.test": { A: "nxdomain", AAAA: "nxdomain" },
    };
    const dns = await dnsServer((name, type) => zone[name]?.[type] ?? "nxdomain");
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    try {
      const p = policy({ allow: parseAllowList(`127.0.0.2:${publicSite.port},localhost:${secret.port}`), dnsServers: [dns.server] });
      const res = await guardedFetch(p, `http://public.test:${publicSite.port}/page`);
      expect(await res.text()).toBe("public page");
      for (const host of ["mixed.test", "inside.test", "nowhere.test", "localhost", "app.localhost"]) {
        expect(await refusal(guardedFetch(p, `http://${host}:${publicSite.port}/page`)), host).toContain(
          `${host} does not resolve to an address outbound requests may reach`,
        );
      }
      // An allowed name is read from /etc/hosts, as before.
      expect(await (await guardedFetch(p, `http://localhost:${secret.port}/`)).text()).toBe(SECRET_BODY);
      expect(dns.questions.filter((q) => q.includes("localhost"))).toEqual([]);
      expect(rebound.hits).toEqual([]);
    } finally {
      warn.mockRestore();
      dns.socket.close();
    }
  });
});
