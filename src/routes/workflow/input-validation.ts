/**
 * Checks a workflow's input against the JSON Schema the host published for it, before the run
 * reaches Temporal. Validators are compiled once per schema version and kept in the isolate.
 */
import { Validator } from "@cfworker/json-schema";
import { ApiError, type Issue, issueText } from "../../errors.ts";
import type { Workflow } from "../../db/schema.ts";

const validators = new Map<string, { all: Validator; first: Validator }>();
// Keywords whose errors only repeat their children's ("property x does not match").
const WRAPPER_KEYWORDS = new Set(["properties", "items", "allOf", "anyOf", "oneOf", "$ref", "additionalItems", "prefixItems"]);

/** Per schema: one validator that lists every error, and one that stops at the first. */
function validatorsFor(workflow: Workflow) {
  const key = `${workflow.id}@${workflow.updatedAt}`;
  let v = validators.get(key);
  if (!v) {
    const schema = workflow.inputSchema as object;
    v = { all: new Validator(schema, "2020-12", false), first: new Validator(schema, "2020-12", true) };
    validators.set(key, v);
  }
  return v;
}

/**
 * Every error, unless there are so many that the validator's own list overflows the stack (it
 * spreads a subschema's errors into its list: a 1 MB array of ~200,000 bad items); then the first.
 */
function validate(workflow: Workflow, input: unknown) {
  const { all, first } = validatorsFor(workflow);
  try {
    return all.validate(input);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    return first.validate(input);
  }
}

/** The keys of a URI-fragment JSON pointer (`#/a~1b/pr%C3%A9nom`), as written: `a/b`, `prénom`. */
function pointerSteps(pointer: string): string[] {
  return pointer
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((step) => {
      let key = step;
      try {
        key = decodeURIComponent(step);
      } catch {
        /* not percent-encoded after all: keep it as it is */
      }
      return key.replace(/~1/g, "/").replace(/~0/g, "~");
    });
}

/**
 * What the schema says a value must be, for a keyword's error: the `description` of the subschema
 * holding the keyword ("an http or https URL"), since "String does not match pattern." says
 * nothing a caller can act on. `keywordLocation` is a JSON pointer into the schema.
 */
function describedAt(schema: unknown, keywordLocation: string): string | undefined {
  const steps = pointerSteps(keywordLocation).slice(0, -1);
  let node: unknown = schema;
  for (const key of steps) {
    if (node === null || typeof node !== "object" || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  const description = node !== null && typeof node === "object" ? (node as { description?: unknown }).description : undefined;
  return typeof description === "string" ? description : undefined;
}

export function assertValidInput(workflow: Workflow, input: unknown): void {
  const result = validate(workflow, input);
  if (result.valid) return;
  const issues: Issue[] = result.errors
    .filter((e) => !WRAPPER_KEYWORDS.has(e.keyword))
    .map((e) => {
      const must = e.keyword === "pattern" || e.keyword === "format" ? describedAt(workflow.inputSchema, e.keywordLocation) : undefined;
      return {
        path: ["input", ...pointerSteps(e.instanceLocation)].join("."),
        message: must ? `${e.error.replace(/\.$/, "")}: must be ${must}` : e.error,
      };
    });
  throw new ApiError(
    "invalid_input",
    `input does not match the input schema of "${workflow.name}": ${issueText(issues, (i) => `${i.path}: ${i.message}`)}`,
    issues,
  );
}
