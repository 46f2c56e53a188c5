/**
 * Prompt templates: text with `{{variable}}` placeholders (spaces inside the braces allowed).
 * The edge reads the variable names when a workflow is saved and checks a run's input against
 * them; the host's `run_prompt` workflow renders the text. Pure functions, shared by both.
 */

import { isReservedName } from "./reserved-names.ts";

/** Variable names: a letter or underscore, then letters, digits or underscores (at most 64); not __proto__, constructor or prototype. */
export const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
/**
 * `{{`, anything but braces, `}}`; the spaces around the name are trimmed afterwards. Not
 * `\{\{\s*([^{}]*?)\s*\}\}`: its lazy group between two `\s*` backtracks on every way to split a
 * run of spaces (cubic): `{{` and 2,000 spaces took 3 s, and a 100 KB template days.
 */
const PLACEHOLDER = /\{\{([^{}]*)\}\}/g;

export interface TemplateProblem {
  placeholder: string;
  message: string;
}

/** The template's variable names in order of first use, and placeholders that are not valid names. */
export function parseTemplate(template: string): { variables: string[]; problems: TemplateProblem[] } {
  const variables: string[] = [];
  const problems: TemplateProblem[] = [];
  for (const match of template.matchAll(PLACEHOLDER)) {
    const name = match[1]!.trim();
    if (!VARIABLE_NAME.test(name)) {
      problems.push({
        placeholder: match[0],
        message: `"${match[0]}" is not a valid variable (letters, digits and _; not starting with a digit)`,
      });
    } else if (isReservedName(name)) {
      problems.push({ placeholder: match[0], message: `"${match[0]}" is not a valid variable: ${name} is a reserved name` });
    } else if (!variables.includes(name)) {
      variables.push(name);
    }
  }
  return { variables, problems };
}

/** Replaces every placeholder with its value (callers check first that every variable has one). */
export function renderTemplate(template: string, values: Record<string, string>): string {
  const byName = new Map(Object.entries(values));
  return template.replace(PLACEHOLDER, (whole, inner: string) => byName.get(inner.trim()) ?? whole);
}

const utf8 = new TextEncoder();

/**
 * The UTF-8 byte length renderTemplate's text would have, counted without building it: a
 * 100,000-character template that uses one variable thousands of times would render to gigabytes
 * from a 1 MiB request.
 */
export function renderedByteLength(template: string, values: Record<string, string>): number {
  const byName = new Map(Object.entries(values).map(([name, value]) => [name, utf8.encode(value).byteLength]));
  let bytes = utf8.encode(template).byteLength;
  for (const match of template.matchAll(PLACEHOLDER)) {
    const value = byName.get(match[1]!.trim());
    if (value !== undefined) bytes += value - utf8.encode(match[0]).byteLength;
  }
  return bytes;
}

/** The JSON Schema of a prompt workflow's input: one string per template variable. */
export function promptInputSchema(variables: string[]): Record<string, unknown> {
  return {
    type: "object",
    properties: Object.fromEntries(variables.map((v) => [v, { type: "string" }])),
    required: variables,
    additionalProperties: false,
  };
}
