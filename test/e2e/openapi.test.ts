import { mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect, it } from "vitest";
import { api } from "./helpers.ts";

describe("/openapi.json", () => {
  it("validates as OpenAPI 3.1 (and is kept as a test artifact)", async () => {
    const res = await api("/openapi.json", { key: null });
    expect(res.status).toBe(200);
    const doc = (await res.json()) as Record<string, unknown>;
    const dir = resolve(import.meta.dirname, "../../test-results");
    mkdirSync(dir, { recursive: true });
    writeFileSync(resolve(dir, "openapi.json"), JSON.stringify(doc, null, 2));
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(validator.version).toBe("3.1");
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });
});
