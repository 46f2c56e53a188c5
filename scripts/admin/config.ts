/**
 * Where the CLI talks to and with which credentials: flags, then environment variables, then
 * (for a local URL only) the dev-only files `npm run dev` writes in .outrider/.
 */
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { CliError, redactUrl } from "./errors.ts";

const devDir = join(resolve(import.meta.dirname, "../.."), ".outrider");
export const DEFAULT_URL = "http://127.0.0.1:8787";
/**
 * Seconds a request waits for its answer (--timeout / OUTRIDER_TIMEOUT): a server, proxy or
 * load balancer that takes the connection and never answers must not hold the CLI (and a script
 * around it) for minutes. The edge answers the admin API in well under a second.
 */
export const DEFAULT_TIMEOUT_S = 30;
/** setTimeout's ceiling (2^31 - 1 ms, about 24 days): past it Node fires after 1 ms instead. */
const MAX_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

export interface Credential {
  flag: string;
  envVar: string;
  devFile: string;
  what: string;
}

/** The hint printed with a 401: which flag, variable or file the value came from. */
export const credentialHint = (c: Credential) => `check ${c.flag} / ${c.envVar} (default for a local URL: .outrider/${c.devFile})`;

export const ADMIN_KEY: Credential = {
  flag: "--admin-key",
  envVar: "OUTRIDER_ADMIN_KEY",
  devFile: "dev-admin-key",
  what: "admin API key (the edge's ADMIN_API_KEY)",
};
export const INTERNAL_SECRET: Credential = {
  flag: "--internal-secret",
  envVar: "OUTRIDER_INTERNAL_SECRET",
  devFile: "dev-internal-secret",
  what: "internal service secret (the edge's INTERNAL_SERVICE_SECRET)",
};
export const API_KEY: Credential = {
  flag: "--api-key",
  envVar: "OUTRIDER_API_KEY",
  devFile: "dev-api-key",
  what: "API key (otr_<id>_<secret>)",
};

export function resolveUrl(flag: string | undefined): string {
  const raw = flag || process.env.OUTRIDER_URL || DEFAULT_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`--url / OUTRIDER_URL is not a URL: "${redactUrl(raw)}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new CliError(`--url must be http(s): "${redactUrl(raw)}"`);
  // No user:password: every message that names the URL names this one.
  return url.origin + url.pathname.replace(/\/+$/, "");
}

/** The request timeout in milliseconds: --timeout, else OUTRIDER_TIMEOUT, else DEFAULT_TIMEOUT_S. */
export function resolveTimeoutMs(flag: string | undefined): number {
  const raw = flag ?? process.env.OUTRIDER_TIMEOUT ?? String(DEFAULT_TIMEOUT_S);
  const seconds = /^\s*\d+(\.\d+)?\s*$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(seconds > 0 && seconds <= MAX_TIMEOUT_S)) {
    throw new CliError(`--timeout / OUTRIDER_TIMEOUT must be a number of seconds above 0 and up to ${MAX_TIMEOUT_S}, not "${raw}"`);
  }
  return Math.ceil(seconds * 1000);
}

/**
 * A credential that can go in an Authorization header: printable ASCII without spaces. Anything
 * else (a file of two keys on two lines, a stray NUL) is refused here, naming where it came from
 * but never showing it: the HTTP layer's error would quote the whole header, secret and all.
 */
function usable(credential: Credential, value: string, from: string): string {
  if (/^[\x21-\x7e]+$/.test(value)) return value;
  throw new CliError(`the ${credential.what} from ${from} has characters a header cannot carry (spaces, line breaks or others)`, [
    "give one value, without spaces or line breaks",
  ]);
}

/** Dev files are only read for a local URL: a deployed environment never gets a dev secret by accident. */
function isLocal(url: string): boolean {
  const host = new URL(url).hostname;
  return host === "localhost" || host === "127.0.0.1" || host === "[::1]" || host === "::1";
}

/** Permission bits of group and others: any of them set, and another user may read (or replace) the file. */
const GROUP_OR_OTHERS = 0o077;

/**
 * A dev credential file's text, or undefined when there is none. As ssh with a private key, one
 * that group or others may read is refused (on POSIX: Windows has no such mode bits) rather than
 * used: its secret is no longer the operator's alone. Opened once and checked through that handle,
 * so the file checked is the file read.
 */
function readDevFile(credential: Credential): string | undefined {
  const path = join(devDir, credential.devFile);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError(`cannot read .outrider/${credential.devFile} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if (process.platform !== "win32" && (mode & GROUP_OR_OTHERS) !== 0) {
      const access = (mode & 0o044) !== 0 ? "read" : "changed";
      throw new CliError(`.outrider/${credential.devFile} can be ${access} by other users (mode ${mode.toString(8)}); refusing to use it`, [
        `make it yours alone: chmod 600 ${path}`,
      ]);
    }
    return readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
}

export function resolveCredential(credential: Credential, flag: string | undefined, url: string): string {
  const given = flag || process.env[credential.envVar];
  if (given) return usable(credential, given.trim(), `${credential.flag} / ${credential.envVar}`);
  if (isLocal(url)) {
    const value = readDevFile(credential)?.trim();
    if (value) return usable(credential, value, `.outrider/${credential.devFile}`);
  }
  throw new CliError(`no ${credential.what} to call ${url} with`, [
    `pass ${credential.flag} <value> or set ${credential.envVar}`,
    isLocal(url)
      ? `(\`npm run dev\` writes the local one to .outrider/${credential.devFile})`
      : `(.outrider/${credential.devFile} is only used for a local URL)`,
  ]);
}
