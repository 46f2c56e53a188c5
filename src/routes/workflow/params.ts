import { ApiError } from "../../errors.ts";
import { workflowIdParam } from "./schemas.ts";

/**
 * A malformed workflow id cannot name any run, so it is a 404 like an unknown one (and never
 * reaches D1 or the host).
 */
export function parseWorkflowIdParam(raw: string): string {
  const parsed = workflowIdParam.safeParse(raw);
  if (!parsed.success) throw new ApiError("run_not_found", "no run with that workflowId (expected `<workflowName>-<uuid>`)");
  return parsed.data;
}
