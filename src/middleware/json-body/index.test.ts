/**
 * parseJsonText() on its own, in workerd: which numbers it refuses because a 64-bit float would
 * change them, and which it takes. The routes' own cases are in test/edge/workflow-bad-input.test.ts.
 */
import { describe, expect, it } from "vitest";
import { ApiError } from "../../errors.ts";
import { INTERNAL_JSON, parseJsonText } from "./index.ts";

/** The refusal's code and issue path, or null when the text parses. */
function refusal(text: string, limits = undefined as typeof INTERNAL_JSON | undefined) {
  try {
    parseJsonText(text, "body", limits);
    return null;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return { code: err.code, path: err.issues?.[0]?.path, message: err.message };
  }
}

describe("parseJsonText: numbers", () => {
  it("happy: integers a float holds exactly (2^53, 2^60 written out, 15-digit ids), decimals, exponents and zeros parse as sent", () => {
    const text =
      '{"safe":9007199254740991,"pow53":9007199254740992,"pow60":1152921504606846976,"neg":-9007199254740993e0,' +
      '"id":123456789012345,"pi":3.14159265358979323846,"small":1e-300,"zero":0e-400,"negzero":-0.000e5,"s":"12345678901234567890"}';
    expect(refusal(text)).toBeNull();
    const parsed = parseJsonText(text) as Record<string, unknown>;
    expect(parsed.pow60).toBe(2 ** 60);
    expect(parsed.s).toBe("12345678901234567890");
  });

  it("errors: an integer past ±2^53 that a float would round is 400 invalid_json naming where, and says to send a string", () => {
    for (const [text, path] of <Array<[string, string]>>[
      ['{"id":12345678901234567890}', "id"],
      ['{"a":[1,2,{"b":-9007199254740993}]}', "a.2.b"],
      ["9007199254740993", "(the body itself)"],
      ['{"ok":1152921504606846976,"twin":{"x":1152921504606846977}}', "twin.x"],
    ]) {
      const answer = refusal(text);
      expect(answer, text).toMatchObject({ code: "invalid_json", path });
      expect(answer!.message).toContain("send it as a string");
    }
  });

  it("errors: a nonzero number too small for a float (read as 0) and one too large (read as Infinity) are 400 invalid_json", () => {
    expect(refusal('{"tiny":1e-400}')).toMatchObject({ code: "invalid_json", path: "tiny" });
    expect(refusal('{"tiny":-0.0000000000000000001e-320}')).toMatchObject({ code: "invalid_json", path: "tiny" });
    expect(refusal('{"list":[1,1e400]}')).toMatchObject({ code: "invalid_json", path: "list.1" });
  });

  it("the host's pushes are JSON.stringify's numbers and are not read digit by digit; Infinity is still refused", () => {
    expect(refusal('{"id":12345678901234567890}', INTERNAL_JSON)).toBeNull();
    expect(refusal('{"n":1e400}', INTERNAL_JSON)).toMatchObject({ code: "invalid_json", path: "n" });
  });

  it("security: a key named __proto__ beside a bad number neither pollutes a prototype nor hides the number", () => {
    expect(refusal('{"__proto__":{"x":12345678901234567890}}')).toMatchObject({ code: "invalid_json", path: "__proto__.x" });
    const parsed = parseJsonText('{"__proto__":{"polluted":1},"n":12345678901234568}') as Record<string, unknown>;
    expect(Object.hasOwn(parsed, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});
