// The docs are part of the contract: every error code and every Worker setting must be in them.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../src/errors.ts";

const root = resolve(import.meta.dirname, "../..");
const read = (path: string) => readFileSync(resolve(root, path), "utf8");

describe("docs match the code", () => {
  it("docs/errors.md lists every error code with its status", () => {
    const doc = read("docs/errors.md");
    for (const [code, status] of Object.entries(ERROR_CODES)) {
      expect(doc, `${code} (${status})`).toMatch(new RegExp(`\\|\\s*${status}\\s*\\|\\s*\`${code}\``));
    }
  });

  it("docs/configuration.md names every var, secret and binding in wrangler.toml", () => {
    const toml = read("wrangler.toml");
    const doc = read("docs/configuration.md");
    const vars = [...toml.matchAll(/^([A-Z][A-Z0-9_]+)\s*=/gm)].map((m) => m[1]!);
    const secrets = [...(toml.match(/required\s*=\s*\[([^\]]*)\]/)?.[1] ?? "").matchAll(/"([A-Z0-9_]+)"/g)].map((m) => m[1]!);
    const bindings = [...toml.matchAll(/^(?:binding|name)\s*=\s*"([A-Z0-9_]+)"/gm)].map((m) => m[1]!);
    expect(vars.length + secrets.length + bindings.length).toBeGreaterThan(5);
    for (const name of [...vars, ...secrets, ...bindings]) expect(doc, name).toContain(`\`${name}\``);
  });
});
