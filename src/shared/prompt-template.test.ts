import { describe, expect, it } from "vitest";
import { parseTemplate, renderedByteLength, renderTemplate } from "./prompt-template.ts";

describe("prompt templates", () => {
  it("reads variables with any spaces inside the braces, in order of first use", () => {
    expect(parseTemplate("{{a}} {{ b }} {{\tc\n}} {{a}}")).toEqual({ variables: ["a", "b", "c"], problems: [] });
  });

  it("takes the innermost braces as the placeholder, and leaves unclosed ones as text", () => {
    expect(parseTemplate("{{ {{x}} }} {{ y").variables).toEqual(["x"]);
    expect(renderTemplate("{{ {{x}} }} {{ y", { x: "1" })).toBe("{{ 1 }} {{ y");
  });

  it("names bad placeholders and reserved names as problems", () => {
    const { variables, problems } = parseTemplate("{{ 1st }} {{__proto__}} {{}} {{ok}}");
    expect(variables).toEqual(["ok"]);
    expect(problems.map((p) => p.placeholder)).toEqual(["{{ 1st }}", "{{__proto__}}", "{{}}"]);
  });

  it("renders each placeholder, spaces and all, with its value", () => {
    expect(renderTemplate("Hi {{ name }}, {{name}}! {{other}}", { name: "Ada" })).toBe("Hi Ada, Ada! {{other}}");
  });

  it("counts the rendered prompt's UTF-8 bytes without rendering it, exactly as rendering would", () => {
    const cases: Array<[string, Record<string, string>]> = [
      ["Hi {{ name }}, {{name}}! {{other}}", { name: "Ada" }],
      ["{{ {{x}} }} {{ y", { x: "1" }],
      ["Grüße, {{ wer }} ☃ {{wer}}", { wer: "Zoë 😀" }],
      ["no placeholders", { a: "b" }],
      ["{{a}}{{a}}{{a}}", { a: "" }],
    ];
    for (const [template, values] of cases) {
      expect(renderedByteLength(template, values), template).toBe(new TextEncoder().encode(renderTemplate(template, values)).byteLength);
    }
    // A variable used 20,000 times with a 1 MiB value: counted (about 21 GB), never built.
    const repeated = "{{v}}".repeat(20_000);
    expect(renderedByteLength(repeated, { v: "x".repeat(1024 * 1024) })).toBe(20_000 * 1024 * 1024);
  });
});
