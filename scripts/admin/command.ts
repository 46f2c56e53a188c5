/** The shape of a CLI command, and what it is given to run. */
import type { OptionName, ParsedArgs } from "./args.ts";
import { CliError } from "./errors.ts";
import type { JsonClient } from "./http.ts";
import { printableDeep, printJson } from "./output.ts";

export interface Context {
  args: ParsedArgs;
  /** The positionals after the command's words (`<orgId>`, `<amount>`, ...). */
  operands: string[];
  /** This command's usage line, for error messages. */
  usage: string;
  url: string;
  json: boolean;
  /** How long each request may wait for its answer (--timeout / OUTRIDER_TIMEOUT). */
  timeoutMs: number;
  /** A client of the admin API; resolving the admin key is deferred until a command needs it. */
  admin(): JsonClient;
}

export interface Command {
  words: string[];
  operands: string[];
  /** Options of this command besides the global ones. */
  options: OptionName[];
  /** How the options are written in the usage text. */
  synopsis?: string;
  summary: string;
  /** Resolves to the exit code (0 when nothing is returned). */
  run(ctx: Context): Promise<number | void>;
}

export const usageOf = (c: Command) => ["npm run admin --", ...c.words, ...c.operands, ...(c.synopsis ? [c.synopsis] : [])].join(" ");

/**
 * Runs `call`, then prints its JSON (--json) or hands it to `show`, with control characters in
 * its strings made visible (a server's text never drives the terminal). An answer `show` cannot
 * read (another service at --url) is a message, not a stack trace.
 */
export async function answer<T>(ctx: Context, call: Promise<T>, show: (value: T) => void): Promise<void> {
  const value = await call;
  if (ctx.json) {
    printJson(value);
    return;
  }
  try {
    show(printableDeep(value));
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    throw new CliError(`the answer of ${ctx.url} is not what this command expects (${error.message})`, [
      "check --url / OUTRIDER_URL: it must be the edge, at the same version as this CLI",
    ]);
  }
}
