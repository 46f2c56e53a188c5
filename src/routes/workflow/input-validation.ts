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

export function assertValidInput(workflow: Workflow, input: unknown): void {
  const result = validatorFor(workflow).validate(input);
  if (result.valid) return;
  const issues: Issue[] = result.errors
    .filter((e) => !WRAPPER_KEYWORDS.has(e.keyword))
    .map((e) => ({
      path: ["input", ...e.instanceLocation.replace(/^#\/?/, "").split("/").filter(Boolean)].join("."),
      message: e.error,
    }));
  throw new ApiError(
    "invalid_input",
    `input does not match the input schema of "${workflow.name}": ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
    issues,
  );
}
