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

export async function readJson<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await c.req.text();
  let raw: unknown;
  try {
    raw = text.length === 0 ? undefined : JSON.parse(text);
  } catch (err) {
    throw new ApiError("invalid_json", `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (raw === undefined) throw new ApiError("invalid_json", "request body is empty; send a JSON object");
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issues = zodIssues(parsed.error);
    throw new ApiError("invalid_request", `invalid request body: ${issues.map((i) => `${i.path || "(body)"}: ${i.message}`).join("; ")}`, issues);
  }
  return parsed.data;
}
