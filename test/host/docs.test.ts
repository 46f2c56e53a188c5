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

  it("README's libraries table names every package in package.json, and no other", () => {
    const readme = read("README.md");
    const start = readme.indexOf("## Libraries, and why");
    const end = readme.indexOf("\n## ", start + 1);
    const section = readme.slice(start, end < 0 ? undefined : end);
    // First column of each row, notes in brackets dropped: "@temporalio/client, worker" names
    // @temporalio/worker (a bare name takes the scope of a cell that starts scoped); "drizzle-orm 0.45 /
    // drizzle-kit 0.31" names both. Names with a colon or a capital (node:sqlite, Schemathesis) are not npm's.
    const listed = new Set<string>();
    for (const [, cell] of section.matchAll(/^\|([^|]+)\|/gm)) {
      const names = cell!
        .replace(/\([^)]*\)/g, "")
        .split(/,|\s\/\s/)
        .map((part) => part.trim().split(/\s+/)[0]!)
        .filter((name) => /^(@[a-z0-9-]+\/)?[a-z0-9][a-z0-9.-]*$/.test(name));
      const scope = names[0]?.match(/^@[a-z0-9-]+\//)?.[0] ?? "";
      for (const name of names) listed.add(name.startsWith("@") ? name : scope + name);
    }
    listed.delete("library");
    const pkg = JSON.parse(read("package.json")) as { dependencies: object; devDependencies: object };
    const packages = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies });
    expect(
      packages.filter((name) => !listed.has(name)),
      "in package.json, not in the README's table",
    ).toEqual([]);
    expect(
      [...listed].filter((name) => !packages.includes(name)),
      "in the README's table, not in package.json",
    ).toEqual([]);
  });
});
