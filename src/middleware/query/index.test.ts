/**
 * singleValuedQuery() on its own, in a minimal app: which percent-escapes are refused and what a
 * route reads otherwise. The routes' own cases are in test/edge/workflow-runs-api.test.ts.
 */
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { AppEnv } from "../../app-env.ts";
import { handleError } from "../../errors.ts";
import { singleValuedQuery } from "./index.ts";

const app = new Hono<AppEnv>();
app.onError(handleError);
app.get("/q", (c) => c.json(singleValuedQuery(c)));

const query = async (raw: string) => {
  const res = await app.request(`/q?${raw}`);
  return {
    status: res.status,
    body: (await res.json()) as Record<string, string> & { error?: { code: string; issues: { path: string }[] } },
  };
};

describe("singleValuedQuery", () => {
  it("happy: a % that starts no escape is a literal percent sign, as Hono, WHATWG and Express read it", async () => {
    for (const [raw, search] of [
      ["search=100%", "100%"],
      ["search=50%off", "50%off"],
      ["search=%", "%"],
      ["search=%zz", "%zz"],
      ["search=%C3%A9%", "é%"],
      ["search=100%25", "100%"],
    ] as const) {
      const { status, body } = await query(raw);
      expect([raw, status, body.search]).toEqual([raw, 200, search]);
    }
  });

  it("error: a well-formed escape that is not UTF-8 is 400 invalid_encoding naming the parameter, even next to a lone %", async () => {
    for (const [raw, path] of [
      ["search=%FF", "search"],
      ["search=100%&name=%C3%28", "name"],
      ["search=%E2%82%", "search"],
      ["%FF%=1", "%FF%"],
      ["na%20me=%FF", "na me"],
    ] as const) {
      const { status, body } = await query(raw);
      expect([raw, status, body.error?.code]).toEqual([raw, 400, "invalid_encoding"]);
      expect(body.error?.issues.map((i) => i.path)).toEqual([path]);
    }
  });
});

describe("singleValuedQuery: long and many names", () => {
  const answer = async (raw: string) => {
    const res = await app.request(`/q?${raw}`);
    return { status: res.status, text: await res.text() };
  };

  it("security: a 400 quotes a very long parameter name cut short, and lists 20 names at most, whatever the URL holds", async () => {
    const long = "a".repeat(6_000);
    const many = Array.from({ length: 300 }, (_, i) => `n${"b".repeat(40)}${i}`);
    for (const raw of [
      `${long}=1&${long}=2`,
      many.map((name) => `${name}=1&${name}=2`).join("&"),
      `${long}=%FF`,
      many.map((name) => `${name}=%FF`).join("&"),
    ]) {
      const { status, text } = await answer(raw);
      expect(status).toBe(400);
      expect(text.length, raw.slice(0, 60)).toBeLessThan(4_000);
      const { message } = (JSON.parse(text) as { error: { message: string } }).error;
      if (raw.startsWith("n")) expect(message).toMatch(/and 280 more$/);
      else expect(message).toContain("more characters)");
    }
  });
});
