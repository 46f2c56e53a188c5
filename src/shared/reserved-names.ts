/**
 * Names that mean something to JavaScript objects. As keys of user data they are dropped or
 * misread by ordinary objects (`obj.__proto__ = v` sets the prototype; zod records skip them), so
 * every place where a caller names things (template variables, multipart fields, env names,
 * top-level input keys of the Workflow Runs API) refuses them with a 400 naming the name, and
 * user-keyed data is kept in null-prototype objects or Maps.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

export const isReservedName = (name: string): boolean => RESERVED_NAMES.has(name);

export const RESERVED_NAME_MESSAGE = "is a reserved name (__proto__, constructor and prototype cannot be used as names)";

/** The reserved names among an object's own keys (JSON.parse makes `__proto__` an own key). */
export function reservedKeys(value: unknown): string[] {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [];
  return Object.keys(value).filter(isReservedName);
}
