import { describe, expect, it } from "vitest";
import { parseTemplate, renderTemplate } from "./prompt-template.ts";

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
});
