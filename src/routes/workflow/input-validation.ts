/**
 * Checks a workflow's input against the JSON Schema the host published for it, before the run
 * reaches Temporal. Validators are compiled once per schema version and kept in the isolate.
 */
import { Validator } from "@cfworker/json-schema";
import { ApiError, type Issue } from "../../errors.ts";
import type { Workflow } from "../../db/schema.ts";

const validators = new Map<string, Validator>();
// Keywords whose errors only repeat their children's ("property x does not match").
const WRAPPER_KEYWORDS = new Set(["properties", "items", "allOf", "anyOf", "oneOf", "$ref", "additionalItems", "prefixItems"]);

function validatorFor(workflow: Workflow): Validator {
  const key = `${workflow.id}@${workflow.updatedAt}`;
  let v = validators.get(key);
  if (!v) {
    v = new Validator(workflow.inputSchema as object, "2020-12", false);
    validators.set(key, v);
  }
  return v;
}

/**
 * What the schema says a value must be, for a keyword's error: the `description` of the subschema
 * holding the keyword ("an http or https URL"), since "String does not match pattern." says
 * nothing a caller can act on. `keywordLocation` is a JSON pointer into the schema.
 */
function describedAt(schema: unknown, keywordLocation: string): string | undefined {
  const steps = keywordLocation.replace(/^#\/?/, "").split("/").filter(Boolean).slice(0, -1);
  let node: unknown = schema;
  for (const step of steps) {
    const key = decodeURIComponent(step).replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  const description = node !== null && typeof node === "object" ? (node as { description?: unknown }).description : undefined;
  return typeof description === "string" ? description : undefined;
}

export function assertValidInput(workflow: Workflow, input: unknown): void {
  const result = validatorFor(workflow).validate(input);
  if (result.valid) return;
  const issues: Issue[] = result.errors
    .filter((e) => !WRAPPER_KEYWORDS.has(e.keyword))
    .map((e) => {
      const must = e.keyword === "pattern" || e.keyword === "format" ? describedAt(workflow.inputSchema, e.keywordLocation) : undefined;
      return {
        path: ["input", ...e.instanceLocation.replace(/^#\/?/, "").split("/").filter(Boolean)].join("."),
        message: must ? `${e.error.replace(/\.$/, "")}: must be ${must}` : e.error,
      };
    });
  throw new ApiError(
    "invalid_input",
    `input does not match the input schema of "${workflow.name}": ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
    issues,
  );
}
