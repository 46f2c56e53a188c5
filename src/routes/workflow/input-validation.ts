/**
 * Checks a workflow's input against the JSON Schema the host published for it, before the run
 * reaches Temporal. Validators are compiled once per schema version and kept in the isolate. A
 * schema is checked when the host publishes it (`inputSchemaProblem`), so that no start meets one
 * the validator cannot run.
 */
import { dereference, format as formatChecks, Validator } from "@cfworker/json-schema";
import { z } from "zod";
import { ApiError, type Issue, issueText } from "../../errors.ts";
import type { Workflow } from "../../db/schema.ts";
import { jsonDepth, MAX_JSON_DEPTH } from "../../middleware/json-body/index.ts";

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

/** The deepest a published input schema's JSON may nest (an input nests at most MAX_JSON_DEPTH levels). */
export const MAX_SCHEMA_NESTING = 256;
/**
 * The deepest the validator may recurse checking one input, counted along the schema: one level
 * per subschema it enters, in place ($ref, allOf, not, ...) or for a property or an item. workerd's
 * stack ran out at about 1,000 levels of the validator (a RangeError, the start's 500); a quarter
 * of that leaves room for the start path's own frames.
 */
export const MAX_VALIDATION_DEPTH = 256;
/**
 * The most subschemas one value may be checked against in place. $refs can fan out without a
 * cycle (`d0: anyOf [d1, d1]`, `d1: anyOf [d2, d2]`, ...): 30 such steps are a billion checks of
 * every input.
 */
export const MAX_IN_PLACE_SUBSCHEMAS = 10_000;

type SchemaObject = Record<string, unknown>;

/** A subschema position holds an object or a boolean (the validator reads keywords off anything else, and crashes on null). */
const subschema = z.custom<SchemaObject | boolean>(
  (value) => typeof value === "boolean" || (typeof value === "object" && value !== null && !Array.isArray(value)),
  { error: "expected a schema (an object or a boolean)" },
);
const subschemas = z.array(subschema);
const subschemaMap = z.record(z.string(), subschema);
const JSON_TYPES = ["null", "boolean", "object", "array", "number", "integer", "string"] as const;
const jsonType = z.enum(JSON_TYPES);
const count = z.number().int().nonnegative();
const unsupported = z.never({ error: "not supported: the edge's validator does not follow it; use $ref" });

/** Keywords whose subschemas check the same value (in place), and those that check a part of it (a property, an item, a key). */
const IN_PLACE_ONE = ["not", "if", "then", "else"] as const;
const IN_PLACE_MANY = ["allOf", "anyOf", "oneOf"] as const;
const PART_ONE = [
  "contains",
  "additionalProperties",
  "unevaluatedProperties",
  "propertyNames",
  "additionalItems",
  "unevaluatedItems",
] as const;
const PART_MAP = ["properties", "patternProperties"] as const;

const keywords = (names: readonly string[], shape: z.ZodType) => names.map((name) => [name, shape] as const);

/**
 * The keywords @cfworker/json-schema reads, with the types it reads them as: any other type makes
 * it throw at a start (`enum: 5`, `required: "name"`, `allOf: {}`) or check nothing. Other keys
 * are annotations, left alone.
 */
const KEYWORD_SHAPES = new Map<string, z.ZodType>([
  ...keywords(["$id", "$anchor", "$ref", "pattern", "format"], z.string()),
  ...keywords(["$recursiveRef", "$dynamicRef"], unsupported),
  ["type", z.union([jsonType, z.array(jsonType)], { error: `expected one of ${JSON_TYPES.join(", ")}, or an array of them` })],
  ["enum", z.array(z.unknown())],
  ["required", z.array(z.string())],
  ["dependentRequired", z.record(z.string(), z.array(z.string()))],
  ["dependencies", z.record(z.string(), z.union([z.array(z.string()), subschema]))],
  ...keywords([...IN_PLACE_MANY, "prefixItems"], subschemas),
  ["items", z.union([subschema, subschemas])],
  ...keywords([...IN_PLACE_ONE, ...PART_ONE], subschema),
  ...keywords([...PART_MAP, "dependentSchemas", "$defs", "definitions"], subschemaMap),
  ...keywords(["minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains", "maxContains"], count),
  ...keywords(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"], z.number()),
  ["multipleOf", z.number().positive()],
  ["uniqueItems", z.boolean()],
]);

type Subschema = SchemaObject | boolean;
/** A subschema whose keywords passed KEYWORD_SHAPES. */
interface CheckedSchema {
  pattern?: string;
  format?: string;
  items?: Subschema | Subschema[];
  prefixItems?: Subschema[];
  dependencies?: Record<string, string[] | Subschema>;
  [keyword: string]: unknown;
}

class SchemaProblem extends Error {
  constructor(at: string, problem: string) {
    super(`${at || "the schema"}: ${problem}`);
  }
}

const pointerKey = (key: string) => key.replace(/~/g, "~0").replace(/\//g, "~1");

interface SchemaGraph {
  /** Every subschema object, with its location (a JSON pointer into the schema). */
  at: Map<SchemaObject, string>;
  inPlace: Map<SchemaObject, SchemaObject[]>;
  parts: Map<SchemaObject, SchemaObject[]>;
  /** Regular expressions that compiled. */
  patterns: Set<string>;
}

/** Checks the keywords of `node` and of every subschema under it, recording the edges between them. */
function walk(node: Subschema, at: string, graph: SchemaGraph): void {
  if (typeof node === "boolean" || graph.at.has(node)) return;
  graph.at.set(node, at);
  // Only the keywords present are checked: most subschemas hold two or three of the fifty.
  for (const key of Object.keys(node)) {
    const checked = KEYWORD_SHAPES.get(key)?.safeParse(node[key]);
    if (checked && !checked.success) {
      const issue = checked.error.issues[0]!;
      throw new SchemaProblem([at, key, ...issue.path.map((step) => pointerKey(String(step)))].join("/"), issue.message);
    }
  }
  const s = node as CheckedSchema;
  const one = (key: string) => s[key] as Subschema | undefined;
  const many = (key: string) => (s[key] ?? []) as Subschema[];
  const map = (key: string) => Object.entries((s[key] ?? {}) as Record<string, Subschema>);
  for (const [source, where] of [
    ...(s.pattern === undefined ? [] : [[s.pattern, `${at}/pattern`]]),
    ...map("patternProperties").map(([key]) => [key, `${at}/patternProperties/${pointerKey(key)}`]),
  ]) {
    if (graph.patterns.has(source!)) continue;
    try {
      new RegExp(source!, "u"); // as the validator compiles it
    } catch (err) {
      throw new SchemaProblem(where!, `not a regular expression: ${(err as Error).message}`);
    }
    graph.patterns.add(source!);
  }
  // The validator looks formats up in a plain object: `__proto__` finds Object.prototype, not a check.
  if (s.format !== undefined && s.format in formatChecks && !Object.hasOwn(formatChecks, s.format))
    throw new SchemaProblem(`${at}/format`, `"${s.format}" is not a format`);
  const inPlace: SchemaObject[] = [];
  const parts: SchemaObject[] = [];
  const enter = (child: Subschema, where: string, edges?: SchemaObject[]) => {
    walk(child, where, graph);
    if (edges && typeof child === "object") edges.push(child);
  };
  for (const key of IN_PLACE_ONE) if (one(key) !== undefined) enter(one(key)!, `${at}/${key}`, inPlace);
  for (const key of IN_PLACE_MANY) for (const [i, child] of many(key).entries()) enter(child, `${at}/${key}/${i}`, inPlace);
  for (const [key, child] of map("dependentSchemas")) enter(child, `${at}/dependentSchemas/${pointerKey(key)}`, inPlace);
  for (const [key, child] of Object.entries(s.dependencies ?? {}))
    if (!Array.isArray(child)) enter(child, `${at}/dependencies/${pointerKey(key)}`, inPlace);
  for (const key of PART_ONE) if (one(key) !== undefined) enter(one(key)!, `${at}/${key}`, parts);
  const items = Array.isArray(s.items) ? s.items : s.items === undefined ? [] : [s.items];
  for (const [i, child] of items.entries()) enter(child, Array.isArray(s.items) ? `${at}/items/${i}` : `${at}/items`, parts);
  for (const [i, child] of (s.prefixItems ?? []).entries()) enter(child, `${at}/prefixItems/${i}`, parts);
  for (const key of PART_MAP) for (const [name, child] of map(key)) enter(child, `${at}/${key}/${pointerKey(name)}`, parts);
  for (const key of ["$defs", "definitions"]) for (const [name, child] of map(key)) enter(child, `${at}/${key}/${pointerKey(name)}`);
  graph.inPlace.set(node, inPlace);
  graph.parts.set(node, parts);
}

/**
 * Why the validator could not check inputs against this JSON Schema, or null when it can: every
 * keyword it reads has the type it reads it as, every regular expression compiles, every `$ref`
 * points inside the schema (nothing is fetched), no `$ref` cycle checks a value against itself
 * for ever, and no input as deep as a caller may send takes the validator deeper than
 * MAX_VALIDATION_DEPTH or past MAX_IN_PLACE_SUBSCHEMAS checks of one value. Any of these was the
 * 500 of every start of the workflow. (Patterns that backtrack for long on some inputs are not
 * detected: the host's patterns are trusted to run in linear time.)
 */
export function inputSchemaProblem(schema: SchemaObject): string | null {
  try {
    if (jsonDepth(JSON.stringify(schema), MAX_SCHEMA_NESTING) > MAX_SCHEMA_NESTING)
      throw new SchemaProblem("", `nests more than ${MAX_SCHEMA_NESTING} levels deep`);
    // The validator marks the schema's objects with their URIs: a copy, so the catalog stores what the host sent.
    const root = structuredClone(schema);
    const graph: SchemaGraph = { at: new Map(), inPlace: new Map(), parts: new Map(), patterns: new Set() };
    walk(root, "", graph);
    let lookup: Record<string, unknown>;
    try {
      lookup = dereference(root);
    } catch (err) {
      throw new SchemaProblem("", `cannot be compiled: ${(err as Error).message}`);
    }
    // Map iteration reaches the subschemas walked inside the loop too.
    for (const [node, at] of graph.at) {
      if (node.$ref === undefined) continue;
      const target = lookup[(node as { __absolute_ref__?: string }).__absolute_ref__ ?? ""];
      if (target === undefined)
        throw new SchemaProblem(`${at}/$ref`, `"${String(node.$ref)}" is not a subschema of this schema (a $ref is never fetched)`);
      if (typeof target === "object" && target !== null) {
        // A $ref may point anywhere in the schema, even into a keyword the walk did not enter.
        const uri = (target as { __absolute_uri__?: string }).__absolute_uri__ ?? "";
        walk(target as SchemaObject, uri.slice(uri.indexOf("#") + 1), graph);
        graph.inPlace.get(node)!.push(target as SchemaObject);
      }
    }
    checkInPlaceFanOut(graph);
    if (deepestValidation(graph, new Map(), root, MAX_JSON_DEPTH, 1) > MAX_VALIDATION_DEPTH) throw tooDeep("");
    return null;
  } catch (err) {
    if (err instanceof SchemaProblem) return err.message;
    throw err;
  }
}

const tooDeep = (at: string) =>
  new SchemaProblem(at, `an input could take the validator more than ${MAX_VALIDATION_DEPTH} subschemas deep (nested too deep)`);

/** Refuses in-place cycles (a value checked against itself for ever) and in-place fan-out past MAX_IN_PLACE_SUBSCHEMAS. */
function checkInPlaceFanOut(graph: SchemaGraph): void {
  const total = new Map<SchemaObject, number>();
  const onPath = new Set<SchemaObject>();
  const expand = (node: SchemaObject, length: number): number => {
    const known = total.get(node);
    if (known !== undefined) return known;
    const at = graph.at.get(node)!;
    if (onPath.has(node))
      throw new SchemaProblem(
        at,
        "a $ref cycle checks a value against itself for ever (through $ref, allOf, anyOf, oneOf, not, if/then/else or dependentSchemas)",
      );
    if (length > MAX_VALIDATION_DEPTH) throw tooDeep(at);
    onPath.add(node);
    let n = 1;
    for (const child of graph.inPlace.get(node)!) {
      n += expand(child, length + 1);
      if (n > MAX_IN_PLACE_SUBSCHEMAS)
        throw new SchemaProblem(at, `checks one value against more than ${MAX_IN_PLACE_SUBSCHEMAS} subschemas`);
    }
    onPath.delete(node);
    total.set(node, n);
    return n;
  };
  for (const node of graph.at.keys()) expand(node, 0);
}

/**
 * The longest chain of subschemas the validator can enter from `node` for a value with `levels`
 * levels of arrays and objects below it (memoized per node and levels). In-place edges are acyclic
 * by now, and each part edge uses a level, so this ends.
 */
function deepestValidation(
  graph: SchemaGraph,
  memo: Map<SchemaObject, number[]>,
  node: SchemaObject,
  levels: number,
  length: number,
): number {
  const known = memo.get(node)?.[levels];
  if (known !== undefined) return known;
  if (length > MAX_VALIDATION_DEPTH) throw tooDeep(graph.at.get(node)!);
  let below = 0;
  for (const child of graph.inPlace.get(node)!) below = Math.max(below, deepestValidation(graph, memo, child, levels, length + 1));
  if (levels > 0)
    for (const child of graph.parts.get(node)!) below = Math.max(below, deepestValidation(graph, memo, child, levels - 1, length + 1));
  const deepest = 1 + below;
  let row = memo.get(node);
  if (!row) {
    row = [];
    memo.set(node, row);
  }
  row[levels] = deepest;
  return deepest;
}
