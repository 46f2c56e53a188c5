import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { call } from "./helpers.ts";

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
    expect(run.security).toEqual([{ apiKey: [] }]);
    expect(Object.keys(run.responses)).toEqual(expect.arrayContaining(["200", "400", "401", "402", "404", "429", "500", "504"]));
    expect(JSON.stringify(run.responses["402"])).toContain("#/components/schemas/Error");
    expect(doc.paths["/health"]!.get!.security).toEqual([]);
    expect(doc.paths["/api/v1/workflow-runs"]!.get!.security).toEqual([{ jwt: [] }, { internalSecret: [], organizationHeader: [] }]);
  });

  it("serves an interactive reference at /docs pointing at the document", async () => {
    const res = await call("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    expect(await res.text()).toContain('data-url="/openapi.json"');
  });
});
