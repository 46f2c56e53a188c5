/**
 * What a run is charged for its outbound HTTP (host/activities/http.ts `fetchRecorded`): every
 * request a server answered is recorded as an `http:request` attribute, a redirect refused after
 * the hops before it included; a URL refused before any request is not.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ApplicationFailure } from "@temporalio/common";
import { MockActivityEnvironment } from "@temporalio/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fetchRecorded } from "../../host/activities/http.ts";
import { fetchPageText } from "../../host/activities/research.ts";
import { policyFromEnv } from "../../host/activities/outbound-guard.ts";
import { type ActivityRuntime, installActivityRuntime, type StepPublisher } from "../../host/activities/runtime.ts";
import type { HttpAttribute } from "../../src/shared/aggregations.ts";

let site: Server;
let port: number;
const hits: string[] = [];

beforeAll(async () => {
  // Stands in for a public site: 127.0.0.2, which the policy below allows on this port only.
  site = createServer((req, res) => {
    hits.push(req.url ?? "");
    const to = new URL(req.url ?? "/", "http://x").searchParams.get("to");
    if (req.url === "/loop") res.writeHead(302, { location: "/loop" }).end();
    else if (req.url === "/emoji")
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(`<p>${"a".repeat(19_999)}😀 tail</p>`);
    else if (req.url === "/latin1")
      res
        .writeHead(200, { "content-type": "text/html; charset=windows-1252" })
        .end(Buffer.from("<title>Caf\xe9</title><p>Caf\xe9 cr\xe8me</p>", "latin1"));
    else if (req.url?.startsWith("/typed/"))
      res.writeHead(200, { "content-type": decodeURIComponent(req.url.slice("/typed/".length)) }).end("<p>typed</p>");
    else if (req.url?.startsWith("/big/")) {
      // More than the guard reads (5 MiB), of a status and type given in the path.
      const [status, type] = req.url.slice("/big/".length).split("/") as [string, string];
      res.writeHead(Number(status), { "content-type": decodeURIComponent(type) }).end(Buffer.alloc(6 * 1024 * 1024, 120));
    } else if (req.url === "/limited") res.writeHead(429, { "retry-after": "7" }).end("slow down");
    else if (req.url?.startsWith("/status/")) res.writeHead(Number(req.url.slice("/status/".length))).end("no");
    else if (to) res.writeHead(302, { location: to }).end();
    else res.end("page");
  });
  await new Promise<void>((r) => site.listen(0, "127.0.0.2", r));
  port = (site.address() as AddressInfo).port;
  installActivityRuntime({
    edge: { pushRunEvents: async () => undefined },
    prices: {},
    llm: {},
    httpRequestCost: 0.001,
    outbound: policyFromEnv({ OUTBOUND_HTTP_ALLOW: `127.0.0.2:${port}` }),
  } as unknown as ActivityRuntime);
});

afterAll(() => {
  site.closeAllConnections();
  site.close();
});

/** Fetches through fetchRecorded inside an activity; what it recorded, and how it failed (if it did). */
async function fetchAndRecord(url: string) {
  const recorded: HttpAttribute[] = [];
  const publisher = {
    attribute: async (a: HttpAttribute) => void recorded.push(a),
    settled: async () => undefined,
  } as unknown as StepPublisher;
  const before = hits.length;
  const error = await new MockActivityEnvironment().run(async () => {
    try {
      await fetchRecorded(publisher, url);
      return null;
    } catch (err) {
      return err;
    }
  });
  return { recorded, error, requests: hits.length - before };
}

describe("fetchRecorded: happy path", () => {
  it("one call is one recorded request, with its status and cost", async () => {
    const { recorded, error, requests } = await fetchAndRecord(`http://127.0.0.2:${port}/page`);
    expect(error).toBeNull();
    expect(requests).toBe(1);
    expect(recorded).toEqual([expect.objectContaining({ type: "http:request", method: "GET", status: 200, count: 1, total: 0.001 })]);
    expect(recorded[0]).not.toHaveProperty("finalUrl");
  });

  it("a request that redirects records the URL asked for and the one that answered (finalUrl)", async () => {
    const asked = `http://127.0.0.2:${port}/go?to=${encodeURIComponent("/page")}`;
    const { recorded, error } = await fetchAndRecord(asked);
    expect(error).toBeNull();
    expect(recorded).toEqual([
      expect.objectContaining({ type: "http:request", url: asked, finalUrl: `http://127.0.0.2:${port}/page`, status: 200, count: 1 }),
    ]);
  });
});

describe("fetchRecorded: refusals", () => {
  it("a redirect refused after servers answered is recorded: the requests before it were made", async () => {
    for (const [path, made] of [
      ["/loop", 6], // more than 5 redirects
      [`/go?to=${encodeURIComponent("http://127.0.0.1:9/")}`, 1], // a redirect into loopback
    ] as const) {
      const { recorded, error, requests } = await fetchAndRecord(`http://127.0.0.2:${port}${path}`);
      expect(error).toBeInstanceOf(ApplicationFailure);
      expect((error as ApplicationFailure).type).toBe("url_not_allowed");
      expect((error as ApplicationFailure).nonRetryable).toBe(true);
      expect(requests).toBe(made);
      expect(recorded).toEqual([expect.objectContaining({ type: "http:request", status: null, count: 1, total: 0.001 })]);
    }
  });

  it("security: a URL on a port fetch never connects to (25, SMTP) is a refusal of the step, not a network error retried and charged", async () => {
    // A public address: only its port is refused (fetch refuses it before any connection).
    const { recorded, error } = await fetchAndRecord("http://93.184.216.34:25/");
    expect(error).toBeInstanceOf(ApplicationFailure);
    expect((error as ApplicationFailure).type).toBe("url_not_allowed");
    expect((error as ApplicationFailure).nonRetryable).toBe(true);
    expect(recorded).toEqual([]);
  });

  it("a URL refused before any request is not recorded or charged", async () => {
    const { recorded, error, requests } = await fetchAndRecord("http://127.0.0.1:9/");
    expect((error as ApplicationFailure).type).toBe("url_not_allowed");
    expect(requests).toBe(0);
    expect(recorded).toEqual([]);
  });
});

describe("summarize_url's page text (host/activities/research.ts fetchPageText)", () => {
  const fetchPage = (path: string): Promise<Awaited<ReturnType<typeof fetchPageText>>> =>
    new MockActivityEnvironment().run(() => fetchPageText(`http://127.0.0.2:${port}${path}`));

  it("the cut at 20,000 characters never leaves half of a surrogate pair (a model's API refuses such a body)", async () => {
    const page = await fetchPage("/emoji");
    expect(page.text.isWellFormed()).toBe(true);
    expect(page.text).toBe("a".repeat(19_999));
  });

  it("the page read after redirects is named (finalUrl), and url stays the one asked for", async () => {
    const page = await fetchPage(`/go?to=${encodeURIComponent("/latin1")}`);
    expect([page.url, page.finalUrl, page.title]).toEqual([
      `http://127.0.0.2:${port}/go?to=%2Flatin1`,
      `http://127.0.0.2:${port}/latin1`,
      "Café",
    ]);
    // No redirect: the page read is the one asked for.
    const direct = await fetchPage("/latin1");
    expect([direct.url, direct.finalUrl]).toEqual([`http://127.0.0.2:${port}/latin1`, `http://127.0.0.2:${port}/latin1`]);
  });

  it("a page is decoded as the charset its Content-Type names", async () => {
    const page = await fetchPage("/latin1");
    expect([page.title, page.text]).toEqual(["Café", "Café crème"]);
  });

  it("a 4xx fails the step for good, except 408 and 429 (a busy or rate-limiting site), which are retried like a 5xx", async () => {
    const failure = (status: number) =>
      fetchPage(`/status/${status}`).then(
        () => null,
        (err: unknown) => err,
      );
    for (const status of [400, 403, 404, 410]) {
      const err = await failure(status);
      expect(err, String(status)).toBeInstanceOf(ApplicationFailure);
      expect((err as ApplicationFailure).nonRetryable, String(status)).toBe(true);
      expect((err as ApplicationFailure).type).toBe("HttpClientError");
    }
    for (const status of [408, 429, 500, 503]) {
      const err = await failure(status);
      expect(err, String(status)).toBeInstanceOf(Error);
      expect((err as ApplicationFailure).nonRetryable ?? false, String(status)).toBe(false);
      expect(String((err as Error).message)).toContain(`answered ${status}`);
      // No Retry-After: Temporal's own backoff.
      expect((err as ApplicationFailure).nextRetryDelay, String(status)).toBeUndefined();
    }
    // A site that says when to come back is retried then, not at Temporal's next backoff.
    const limited = await fetchPage("/limited").then(
      () => null,
      (e: unknown) => e,
    );
    expect(limited).toBeInstanceOf(ApplicationFailure);
    expect((limited as ApplicationFailure).nonRetryable).toBe(false);
    expect((limited as ApplicationFailure).nextRetryDelay).toBe(7_000);
  });

  it("a body that is not text (a PDF, an image, an archive) fails the step for good, unread, instead of being handed to a model as noise", async () => {
    for (const type of ["application/pdf", "image/png", "application/octet-stream", "application/zip", "image/svg+xml"]) {
      const err = await fetchPage(`/typed/${encodeURIComponent(type)}`).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, type).toBeInstanceOf(ApplicationFailure);
      expect((err as ApplicationFailure).nonRetryable, type).toBe(true);
      expect((err as ApplicationFailure).type, type).toBe("UnsupportedContentType");
      expect((err as Error).message, type).toContain(type);
    }
    for (const type of ["text/html; charset=utf-8", "TEXT/PLAIN", "application/xhtml+xml", "application/json", "application/rss+xml"]) {
      expect((await fetchPage(`/typed/${encodeURIComponent(type)}`)).text, type).toBe("typed");
    }
    // A server that names no type: read as a page.
    expect((await fetchPage("/untyped")).text).toBe("page");
  });

  it("a body the step will not read (not text, or an error status) is not downloaded: a 6 MiB PDF or 404 page fails as what it is, not as too large", async () => {
    const pdf = await fetchPage(`/big/200/${encodeURIComponent("application/pdf")}`).then(
      () => null,
      (e: unknown) => e as ApplicationFailure,
    );
    expect(pdf?.type).toBe("UnsupportedContentType");
    const missing = await fetchPage(`/big/404/${encodeURIComponent("text/html")}`).then(
      () => null,
      (e: unknown) => e as ApplicationFailure,
    );
    expect(missing?.type).toBe("HttpClientError");
    // A page of text that large is still refused as too large.
    const page = await fetchPage(`/big/200/${encodeURIComponent("text/html")}`).then(
      () => null,
      (e: unknown) => e as ApplicationFailure,
    );
    expect(page?.type).toBe("ResponseTooLarge");
  });

  it("a failure after a redirect names the page that answered, and the URL asked for", async () => {
    const failure = (path: string, redirected = true) =>
      fetchPage(redirected ? `/go?to=${encodeURIComponent(path)}` : path).then(
        () => null,
        (e: unknown) => e as ApplicationFailure,
      );
    const asked = (path: string) => `http://127.0.0.2:${port}/go?to=${encodeURIComponent(path)}`;
    const missing = await failure("/status/404");
    expect(missing?.type).toBe("HttpClientError");
    expect(missing?.message).toBe(`fetching http://127.0.0.2:${port}/status/404 (redirected from ${asked("/status/404")}) answered 404`);
    const busy = await failure("/status/503");
    expect(busy?.type).toBe("HttpUnavailable");
    expect(busy?.message).toBe(`fetching http://127.0.0.2:${port}/status/503 (redirected from ${asked("/status/503")}) answered 503`);
    const pdf = `/typed/${encodeURIComponent("application/pdf")}`;
    const binary = await failure(pdf);
    expect(binary?.type).toBe("UnsupportedContentType");
    expect(binary?.message).toBe(
      `http://127.0.0.2:${port}${pdf} (redirected from ${asked(pdf)}) is application/pdf, not a page of text: summarize_url reads HTML and text`,
    );
    // Without a redirect, the one URL.
    expect((await failure("/status/404", false))?.message).toBe(`fetching http://127.0.0.2:${port}/status/404 answered 404`);
  });
});
