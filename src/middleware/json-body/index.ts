/**
 * Parses a JSON body against a zod schema: malformed JSON is `invalid_json`, a schema mismatch is
 * `invalid_request` with one issue per field (dotted path and message).
 */
import type { Context } from "hono";
import type { z } from "zod";
import { ApiError, type Issue } from "../../errors.ts";

export function zodIssues(error: z.ZodError, prefix = ""): Issue[] {
  return error.issues.map((issue) => ({
    path: [prefix, ...issue.path.map(String)].filter(Boolean).join("."),
    message: issue.message,
  }));
}

/** The body as JSON, or undefined when it is empty (or only white space). */
export async function readOptionalJson(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError("invalid_json", `request body is not valid JSON: ${(err as Error).message}`);
  }
}

export async function readJson<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const raw = await readOptionalJson(c);
  if (raw === undefined) throw new ApiError("invalid_json", "request body is empty; send a JSON object");
  return parseBody(schema, raw);
}

function parseBody<T extends z.ZodType>(schema: T, raw: unknown): z.infer<T> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = zodIssues(parsed.error);
    throw new ApiError("invalid_request", `invalid request body: ${issues.map((i) => `${i.path || "(body)"}: ${i.message}`).join("; ")}`, issues);
  }
  return parsed.data;
}

/** Like readJson, but an empty body stands for `{}` (for routes whose fields are all optional). */
export async function readJsonOrEmpty<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  return parseBody(schema, (await readOptionalJson(c)) ?? {});
}
