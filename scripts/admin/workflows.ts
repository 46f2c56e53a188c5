/** Admin API commands for prompt workflows (/admin/v1/.../workflows). */
import { flag, integer, pageQuery, required, str, type ParsedArgs } from "./args.ts";
import { answer, type Command } from "./command.ts";
import { out, printFields, printTable } from "./output.ts";

interface PromptWorkflow {
  id: string;
  organizationId: string;
  name: string;
  description: string;
  template: string;
  variables: string[];
  model: string;
  webSearch: boolean;
  maxOutputTokens: number;
  published: boolean;
  runUrl: string;
  createdAt: string;
  updatedAt: string;
}

const seg = encodeURIComponent;

function showWorkflow(w: PromptWorkflow) {
  printFields([
    ["id", w.id],
    ["organization", w.organizationId],
    ["name", w.name],
    ["description", w.description],
    ["model", w.model],
    ["web search", w.webSearch ? "yes" : "no"],
    ["max output", `${w.maxOutputTokens} tokens`],
    ["variables", w.variables.join(", ")],
    ["published", w.published ? out.green("yes") : "no"],
    ["run", `POST ${w.runUrl}`],
    ["updated", w.updatedAt],
  ]);
  console.log(out.dim("template:"));
  for (const line of w.template.split("\n")) console.log(`  ${line}`);
}

/** The prompt-workflow fields given on the command line (only those given). */
function workflowFields(args: ParsedArgs) {
  const fields: Record<string, unknown> = {};
  for (const name of ["name", "template", "model", "description"] as const) {
    const value = str(args, name);
    if (value !== undefined) fields[name] = value;
  }
  const webSearch = flag(args, "web-search");
  if (webSearch !== undefined) fields.webSearch = webSearch;
  const max = integer("--max-output-tokens", str(args, "max-output-tokens"));
  if (max !== undefined) fields.maxOutputTokens = max;
  return fields;
}

/** Runs `call`, then prints its JSON (--json) or hands it to `show`. */

const WORKFLOW_OPTIONS = ["name", "template", "model", "web-search", "max-output-tokens", "description"] as const;

export const workflowCommands: Command[] = [
  {
    words: ["workflows", "create"],
    operands: ["<orgId>"],
    options: [...WORKFLOW_OPTIONS],
    synopsis: "--name <name> --template <text> --model <provider/model> [--web-search] [--max-output-tokens <n>] [--description <text>]",
    summary: "create a prompt workflow (unpublished); {{variables}} in the template are its inputs",
    run: (ctx) => {
      for (const name of ["name", "template", "model"] as const) required(ctx.args, name, ctx.usage);
      return answer(
        ctx,
        ctx.admin().request<PromptWorkflow>("POST", `/admin/v1/organizations/${seg(ctx.operands[0]!)}/workflows`, workflowFields(ctx.args)),
        (w) => {
          console.log(`${out.green("created")} prompt workflow ${out.bold(w.id)} (unpublished: \`workflows publish ${w.id}\` to run it)`);
          showWorkflow(w);
        },
      );
    },
  },
  {
    words: ["workflows", "list"],
    operands: ["<orgId>"],
    options: ["limit", "before"],
    synopsis: "[--limit <n>] [--before <next>]",
    summary: "an organization's prompt workflows, newest first (--before the previous page's next for older ones)",
    run: (ctx) =>
      answer(
        ctx,
        ctx.admin().request<{
          workflows: PromptWorkflow[];
          next: string | null;
        }>("GET", `/admin/v1/organizations/${seg(ctx.operands[0]!)}/workflows${pageQuery(ctx.args)}`),
        ({ workflows, next }) => {
          printTable(
            ["ID", "NAME", "MODEL", "PUBLISHED", "VARIABLES", "UPDATED"],
            workflows.map((w) => [w.id, w.name, w.model, w.published ? "yes" : "no", w.variables.join(", "), w.updatedAt]),
            "no prompt workflows",
          );
          if (next) console.log(out.dim(`older prompt workflows: --before ${next}`));
        },
      ),
  },
  {
    words: ["workflows", "show"],
    operands: ["<workflowId>"],
    options: [],
    summary: "a prompt workflow with its template",
    run: (ctx) => answer(ctx, ctx.admin().request<PromptWorkflow>("GET", `/admin/v1/workflows/${seg(ctx.operands[0]!)}`), showWorkflow),
  },
  {
    words: ["workflows", "update"],
    operands: ["<workflowId>"],
    options: [...WORKFLOW_OPTIONS],
    synopsis: "[--name ..] [--template ..] [--model ..] [--web-search | --no-web-search] [--max-output-tokens ..] [--description ..]",
    summary: "change the fields given",
    run: (ctx) =>
      answer(
        ctx,
        ctx.admin().request<PromptWorkflow>("PATCH", `/admin/v1/workflows/${seg(ctx.operands[0]!)}`, workflowFields(ctx.args)),
        (w) => {
          console.log(`${out.green("updated")} prompt workflow ${out.bold(w.id)}`);
          showWorkflow(w);
        },
      ),
  },
  ...(["publish", "unpublish"] as const).map(
    (action): Command => ({
      words: ["workflows", action],
      operands: ["<workflowId>"],
      options: [],
      summary: action === "publish" ? "make it runnable at POST /api/v1/run/<workflowId>" : "stop it being runnable",
      run: (ctx) =>
        answer(ctx, ctx.admin().request<PromptWorkflow>("POST", `/admin/v1/workflows/${seg(ctx.operands[0]!)}/${action}`), (w) => {
          console.log(
            `${out.green(`${action}ed`)} prompt workflow ${out.bold(w.id)} "${w.name}"${w.published ? ` (POST ${w.runUrl})` : ""}`,
          );
        }),
    }),
  ),
];
