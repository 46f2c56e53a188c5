/**
 * `npm run admin -- <command>`: the operator's CLI over the admin API (/admin/v1) and, for `run`,
 * the Workflow Runs API. Same commands against a local stack or a deployed one; only the URL and
 * the keys differ (OUTRIDER_* environment variables, flags, which `ps` shows every user, or for a
 * local URL the dev-only files `npm run dev` writes in .outrider/). See "Admin CLI" in README.md.
 */
import { GLOBAL_OPTIONS, parse, str, type ParsedArgs } from "./admin/args.ts";
import { usageOf, type Command } from "./admin/command.ts";
import { ADMIN_KEY, credentialHint, DEFAULT_TIMEOUT_S, resolveCredential, resolveTimeoutMs, resolveUrl } from "./admin/config.ts";
import { CliError, reportFailure } from "./admin/errors.ts";
import { jsonClient, type JsonClient } from "./admin/http.ts";
import { out } from "./admin/output.ts";
import { accountCommands } from "./admin/accounts.ts";
import { runCommand } from "./admin/run.ts";
import { runCommands } from "./admin/runs.ts";
import { workflowCommands } from "./admin/workflows.ts";
import { webhookCommands } from "./admin/webhooks.ts";

const commands: Command[] = [...accountCommands, ...workflowCommands, ...webhookCommands, ...runCommands, runCommand];

function usage(only?: string): string {
  const shown = commands.filter((c) => !only || c.words[0] === only);
  const lines = [`${out.bold("usage:")} npm run admin -- <command> [options]`, "", out.bold("commands:")];
  for (const c of shown)
    lines.push(`  ${[...c.words, ...c.operands, ...(c.synopsis ? [c.synopsis] : [])].join(" ")}`, `      ${out.dim(c.summary)}`);
  lines.push(
    "  help",
    `      ${out.dim("this text (also --help, or no command)")}`,
    "",
    out.bold("options for every command:"),
    "  --url <url>              the edge (default: OUTRIDER_URL, else http://127.0.0.1:8787)",
    "  --admin-key <key>        admin API key (default: OUTRIDER_ADMIN_KEY, else .outrider/dev-admin-key for a local URL)",
    "  --json                   print the raw JSON responses (run: one JSON line per event)",
    `  --timeout <seconds>      how long a request waits for its answer (default: OUTRIDER_TIMEOUT, else ${DEFAULT_TIMEOUT_S})`,
    "",
    out.bold("run also takes:"),
    "  --internal-secret <s>    INTERNAL_SERVICE_SECRET (default: OUTRIDER_INTERNAL_SECRET, else .outrider/dev-internal-secret)",
    "  --api-key <key>          to look the workflow up by name in GET /workflow/catalog",
    "                           (default: OUTRIDER_API_KEY, else .outrider/dev-api-key; not needed with a UUID)",
    "  --env NAME=value         a variable for the run's activities, repeatable; --env NAME sends this shell's $NAME",
    "",
    out.bold("secrets:"),
    "  A flag's value is visible to every user of the machine in `ps`:",
    "  give keys as OUTRIDER_ADMIN_KEY, OUTRIDER_INTERNAL_SECRET and OUTRIDER_API_KEY, and a run's secrets",
    "  as --env NAME after `export NAME=...`, rather than as flags. .outrider/ files other users can read",
    "  are refused (chmod 600 them).",
    "",
    out.bold("examples:"),
    "  npm run admin -- orgs create --name 'Acme' --id org_acme",
    "  npm run admin -- keys create org_acme --name backend --rate-limit 120",
    "  npm run admin -- keys create org_acme --name dashboard --scopes runs:read",
    "  npm run admin -- orgs suspend org_acme --reason 'unpaid invoice'",
    "  npm run admin -- orgs terminate-runs org_acme --reason 'abuse report #42'",
    "  npm run admin -- runs terminate hello-0b6c… --org org_acme --reason 'abuse report #42'",
    "  npm run admin -- credits grant org_acme 100000 --note 'trial'",
    "  npm run admin -- webhooks create org_acme --endpoint https://example.com/hooks --events run.failed,run.timed_out",
    "  npm run admin -- webhooks seal-secrets",
    '  npm run admin -- run hello --org org_acme --input \'{"name":"Ada"}\'',
  );
  return lines.join("\n");
}

function findCommand(positionals: string[]): Command {
  const matches = commands.filter((c) => c.words.every((w, i) => positionals[i] === w));
  if (matches.length > 0) return matches.sort((a, b) => b.words.length - a.words.length)[0]!;
  const group = commands.filter((c) => c.words[0] === positionals[0]);
  if (group.length > 0) {
    const actions = group.map((c) => c.words[1]).join(", ");
    throw new CliError(positionals[1] ? `unknown command "${positionals[0]} ${positionals[1]}"` : `"${positionals[0]}" needs a command`, [
      `${positionals[0]} commands: ${actions}`,
    ]);
  }
  throw new CliError(`unknown command "${positionals[0]}"`, ["run `npm run admin -- help` for the list"]);
}

function checkArgs(command: Command, args: ParsedArgs): string[] {
  const operands = args.positionals.slice(command.words.length);
  const line = usageOf(command);
  if (operands.length < command.operands.length) {
    throw new CliError(`missing ${command.operands.slice(operands.length).join(" ")}`, [`usage: ${line}`]);
  }
  if (operands.length > command.operands.length)
    throw new CliError(`unexpected argument "${operands[command.operands.length]}"`, [`usage: ${line}`]);
  // Operands are path segments: an empty one, `.` or `..` would send the request to another route
  // (`keys list .` asked for organization "api-keys", `keys revoke org_x ""` was "no route").
  for (const [i, operand] of operands.entries()) {
    if (operand.trim() === "" || operand === "." || operand === "..")
      throw new CliError(
        operand.trim() === ""
          ? `${command.operands[i]} must be given (it is empty)`
          : `${command.operands[i]} must be an id, not "${operand}"`,
        [`usage: ${line}`],
      );
  }
  for (const option of args.given) {
    if (!GLOBAL_OPTIONS.includes(option.name) && !command.options.includes(option.name)) {
      throw new CliError(`${option.raw} does not apply to \`${command.words.join(" ")}\``, [`usage: ${line}`]);
    }
  }
  return operands;
}

async function main(argv: string[]): Promise<number> {
  const args = parse(argv);
  if (args.positionals.length === 0 || args.positionals[0] === "help") {
    console.log(usage());
    return 0;
  }
  if (args.values.help) {
    console.log(usage(commands.some((c) => c.words[0] === args.positionals[0]) ? args.positionals[0] : undefined));
    return 0;
  }
  const command = findCommand(args.positionals);
  const operands = checkArgs(command, args);
  const url = resolveUrl(str(args, "url"));
  const timeoutMs = resolveTimeoutMs(str(args, "timeout"));
  let admin: JsonClient | undefined;
  const code = await command.run({
    args,
    operands,
    usage: usageOf(command),
    url,
    json: args.values.json === true,
    timeoutMs,
    admin: () =>
      (admin ??= jsonClient(url, resolveCredential(ADMIN_KEY, str(args, "admin-key"), url), timeoutMs, credentialHint(ADMIN_KEY))),
  });
  return code ?? 0;
}

const json = process.argv.includes("--json");
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (failure: unknown) => {
    reportFailure(failure, json);
    process.exitCode = 1;
  },
);
