import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { SCALAR_SCRIPT_PATH, SCALAR_VERSION } from "../../src/routes/docs-assets.ts";
import { call, type ErrorBody } from "./helpers.ts";

interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, unknown> }>>;
  components: { securitySchemes: Record<string, unknown> };
}

const toOpenApiPath = (path: string) => path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

describe("OpenAPI document", () => {
  it("is served at /openapi.json as OpenAPI 3.1 without auth", async () => {
    const res = await call("/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as OpenApiDocument;
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.components.securitySchemes)).toEqual(expect.arrayContaining(["apiKey", "jwt", "adminKey", "streamToken"]));
  });

  it("lists every registered route, and nothing that is not registered", async () => {
    const doc = (await (await call("/openapi.json")).json()) as OpenApiDocument;
    const registered = new Set(
      createApp()
        .routes.filter((r) => r.method !== "ALL" && !r.path.endsWith("*"))
        .map((r) => `${r.method.toLowerCase()} ${toOpenApiPath(r.path)}`),
    );
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`)));
    expect([...registered].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((d) => !registered.has(d))).toEqual([]);
    expect(registered.size).toBeGreaterThan(35);
  });

  it("documents each route's auth and its errors with the shared error shape", async () => {
    const doc = (await (await call("/openapi.json")).json()) as OpenApiDocument;
    const run = doc.paths["/api/v1/run/{workflowId}"]!.post!;
    // An API key's entry names the key scope the route needs (test/edge/key-scopes.test.ts).
    expect(run.security).toEqual([{ apiKey: ["runs:start"] }]);
    expect(Object.keys(run.responses)).toEqual(expect.arrayContaining(["200", "400", "401", "402", "403", "404", "429", "500", "504"]));
    expect(JSON.stringify(run.responses["402"])).toContain("#/components/schemas/Error");
    expect(doc.paths["/health"]!.get!.security).toEqual([]);
    expect(doc.paths["/api/v1/workflow-runs"]!.get!.security).toEqual([{ jwt: [] }, { internalSecret: [], organizationHeader: [] }]);
  });

  it("says what each route really answers: rate limits, Basic auth, error envelopes, 202s and optional bodies", async () => {
    type Operation = {
      security?: unknown[];
      responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
      requestBody?: { required?: boolean };
    };
    const doc = (await (await call("/openapi.json")).json()) as { paths: Record<string, Record<string, Operation>> };
    const op = (path: string, method = "post") => doc.paths[path]![method]!;
    // Rate limits are per tenant key: the admin API and the host's routes have none.
    expect(Object.keys(op("/workflow/start").responses)).toContain("429");
    expect(Object.keys(op("/api/v1/workflow-runs/execute").responses)).toContain("429");
    expect(Object.keys(op("/admin/v1/organizations").responses)).not.toContain("429");
    expect(Object.keys(op("/admin/v1/organizations").responses)).toContain("401");
    const internal = Object.keys(doc.paths).find((p) => p.startsWith("/internal/"))!;
    expect(Object.values(doc.paths[internal]!).every((o) => !("429" in o.responses))).toBe(true);
    // Output's CLI sends the key as Basic credentials: the Workflow API and /heartbeat take it.
    expect(op("/workflow/start").security).toEqual([{ apiKey: ["runs:start"] }, { apiKeyBasic: ["runs:start"] }]);
    expect(op("/heartbeat").security).toEqual([{ apiKey: [] }, { apiKeyBasic: [] }]);
    expect(op("/api/v1/run/{workflowId}").security).toEqual([{ apiKey: ["runs:start"] }]);
    expect(op("/workflow/{id}/history/stream", "get").security).toEqual([
      { apiKey: ["runs:read"] },
      { apiKeyBasic: ["runs:read"] },
      { streamToken: [] },
    ]);
    // Idempotency errors in the family's own envelope.
    expect(JSON.stringify(op("/workflow/start").responses["422"])).toContain("#/components/schemas/OutputError");
    expect(JSON.stringify(op("/api/v1/run/{workflowId}").responses["422"])).toContain("#/components/schemas/Error");
    // A start Temporal has not confirmed yet is a 202 on the streaming starts; /workflow/run never
    // answers 2xx for a run that has not ended (Output's clients read it as the end): 408.
    expect(Object.keys(op("/workflow/run").responses)).not.toContain("202");
    expect(Object.keys(op("/workflow/run").responses)).toContain("408");
    expect(Object.keys(op("/api/v1/workflow-runs/execute/stream").responses)).toContain("202");
    // Bodies the routes read as {} when left out are not required.
    expect(op("/workflow/{id}/signal/{name}").requestBody?.required).toBe(false);
    expect(op("/workflow/{id}/terminate").requestBody?.required).toBe(false);
    expect(op("/api/v1/run/{workflowId}").requestBody?.required).toBe(false);
    expect(op("/workflow/start").requestBody?.required).toBe(true);
    // A credit grant takes an Idempotency-Key too: the header, and the replay's response header.
    for (const path of ["/admin/v1/organizations/{orgId}/credits", "/workflow/start"]) {
      const operation = op(path) as Operation & { parameters?: Array<{ in: string; name: string }> };
      expect(
        operation.parameters?.some((p) => p.in === "header" && p.name === "idempotency-key"),
        path,
      ).toBe(true);
      expect(JSON.stringify(operation.responses["200"]), path).toContain("Idempotent-Replayed");
    }
  });

  it("documents what the routes' authentication itself answers: 400 for an internal Workflow Runs call naming no organization, 413 for a signed host body over the limit", async () => {
    // The behaviour: the dashboard (whose own errors are 404 only) answers 400 before it runs.
    const unnamed = await call(`/api/v1/workflow-runs/dashboard/${crypto.randomUUID()}`, {
      headers: { authorization: "Bearer edge-test-internal-secret-of-32-characters" },
    });
    expect(unnamed.status).toBe(400);
    expect(((await unnamed.json()) as ErrorBody).error.code).toBe("invalid_request");
    // (A signed /internal/* body over MAX_SIGNED_BODY_BYTES is 413: test/edge/internal-routes.test.ts.)
    type Operation = { security?: Array<Record<string, unknown>>; responses: Record<string, { description: string }> };
    const doc = (await (await call("/openapi.json")).json()) as { paths: Record<string, Record<string, Operation>> };
    const operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => [`${method} ${path}`, op] as const),
    );
    const byScheme = (scheme: string) => operations.filter(([, op]) => op.security?.some((s) => scheme in s));
    expect(byScheme("internalSecret").length).toBeGreaterThan(5);
    for (const [name, op] of byScheme("internalSecret"))
      expect(op.responses["400"]?.description ?? "no 400", name).toContain("`invalid_request`");
    expect(byScheme("hostSignature").length).toBe(3);
    for (const [name, op] of byScheme("hostSignature"))
      expect(op.responses["413"]?.description ?? "no 413", name).toContain("`payload_too_large`");
  });

  it("every pattern is a plain regular expression, as JSON Schema reads one (no /flags), and the catalog pattern takes our catalog id", async () => {
    const doc = await (await call("/openapi.json")).json();
    const patterns: string[] = [];
    JSON.stringify(doc, (key, value) => {
      if (key === "pattern" && typeof value === "string") patterns.push(value);
      return value;
    });
    expect(patterns.length).toBeGreaterThan(0);
    for (const pattern of patterns) {
      expect(() => new RegExp(pattern, "u"), pattern).not.toThrow();
      expect(pattern, pattern).not.toMatch(/\/[dgimsuyv]+$/);
    }
    const run = (
      doc as {
        paths: Record<
          string,
          { post: { requestBody: { content: Record<string, { schema: { properties: Record<string, { pattern: string }> } }> } } }
        >;
      }
    ).paths["/workflow/run"]!.post.requestBody.content["application/json"]!.schema;
    for (const id of ["outrider", "OUTRIDER", "team.queue@v2"])
      expect(new RegExp(run.properties.catalog!.pattern, "u").test(id), id).toBe(true);
  });

  it("serves an interactive reference at /docs pointing at the document", async () => {
    const res = await call("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    expect(await res.text()).toContain('data-url="/openapi.json"');
  });
});

describe("reference and viewer pages (security: our origin only, strict CSP)", () => {
  const directives = (csp: string) => new Map(csp.split(/;\s*/).map((d) => [d.split(" ")[0]!, d.split(" ").slice(1)] as const));
  /** Every URL in the page's src and href attributes, and any absolute URL anywhere in it. */
  const urlsIn = (html: string) =>
    [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]!).concat(html.match(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/gi) ?? []);

  it("/docs loads only the pinned Scalar build from this origin, with a CSP that allows nothing else", async () => {
    const res = await call("/docs");
    const html = await res.text();
    expect(urlsIn(html).sort()).toEqual(["/openapi.json", SCALAR_SCRIPT_PATH].sort());
    expect(html).not.toMatch(/cdn|jsdelivr|unpkg/i);
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>[^<]+<\/script>/); // no inline script
    const csp = directives(res.headers.get("content-security-policy") ?? "");
    expect(csp.get("default-src")).toEqual(["'none'"]);
    expect(csp.get("script-src")).toEqual(["'self'"]);
    expect(csp.get("connect-src")).toEqual(["'self'"]);
    expect(csp.get("frame-ancestors")).toEqual(["'none'"]);
    expect(csp.get("img-src")).toEqual(["'self'", "data:", "blob:"]);
    expect(csp.get("font-src")).toEqual(["'self'", "data:"]);
    expect(csp.get("base-uri")).toEqual(["'none'"]);
    expect(csp.get("script-src")).not.toContain("'unsafe-eval'");
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  });

  it("routes that read a JSON body document json_too_deep beside invalid_json", async () => {
    const doc = (await (await call("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>>;
    };
    for (const [path, method] of [
      ["/workflow/start", "post"],
      ["/api/v1/run/{workflowId}", "post"],
      ["/admin/v1/organizations/{orgId}/credits", "post"],
    ] as const) {
      expect(doc.paths[path]![method]!.responses["400"]!.description, path).toContain("`json_too_deep`");
    }
  });

  it("the pinned build is a static asset of this Worker", async () => {
    expect(SCALAR_SCRIPT_PATH).toContain(SCALAR_VERSION);
    const asset = await env.ASSETS.fetch(new Request(`http://edge.test${SCALAR_SCRIPT_PATH}`));
    expect(asset.status).toBe(200);
    expect(asset.headers.get("content-type")).toMatch(/javascript/);
    expect((await asset.text()).length).toBeGreaterThan(1_000_000);
  });

  it("the run viewer page: no inline code (scripts and styles from our origin only), and it loads nothing from elsewhere", async () => {
    const res = await call("/runs/hello-00000000-0000-4000-8000-000000000000?token=x");
    const html = await res.text();
    const csp = directives(res.headers.get("content-security-policy") ?? "");
    expect(csp.get("default-src")).toEqual(["'none'"]);
    expect(csp.get("script-src")).toEqual(["'self'"]);
    expect(csp.get("style-src")).toEqual(["'self'"]);
    const scripts = [...html.matchAll(/<script([^>]*)>([^<]*)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      // Every script is a file from our origin: an inline one would not run under script-src 'self'.
      expect(attrs).toMatch(/src="\/viewer\/[^"]+\.js"/);
      expect(body!.trim()).toBe("");
    }
    expect(html).not.toMatch(/<style[\s>]/);
    expect(csp.get("connect-src")).toEqual(["'self'"]);
    expect(urlsIn(html).filter((u) => /^(https?:)?\/\//.test(u))).toEqual([]);
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
  });
});
