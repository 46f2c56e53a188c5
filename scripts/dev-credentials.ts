/**
 * DEV ONLY: the credentials `npm run dev` keeps in .outrider/ (git-ignored) so that tools such as
 * `npm run admin` find the same values across sessions. They are the operator's alone: the folder
 * is 0700 and each file 0600, and a file or folder that group or others could read (made by older
 * code, copied in, or created under a loose umask) is made private again before it is used. The
 * admin CLI refuses such a file (scripts/admin/config.ts), so leaving it would only move the error.
 */
import { chmodSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Only the owner may list the folder or open what is in it. */
export const DEV_DIR_MODE = 0o700;
/** Only the owner may read or change a credential file. */
export const DEV_FILE_MODE = 0o600;
/** Permission bits of group and others. */
const GROUP_OR_OTHERS = 0o077;

/** POSIX only: Windows has no such mode bits, and chmod there changes nothing that matters here. */
const hasModeBits = process.platform !== "win32";

/**
 * Creates `dir` (0700) if missing, or takes group and others' access away if they have any.
 * Returns a note for the log when it changed an existing folder's mode, else undefined.
 */
export function ensurePrivateDir(dir: string): string | undefined {
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: DEV_DIR_MODE });
    // mkdir's mode passes through the umask, which can only take bits away: set it exactly.
    if (hasModeBits) chmodSync(dir, DEV_DIR_MODE);
    return undefined;
  }
  const mode = statSync(dir).mode & 0o777;
  if (!hasModeBits || (mode & GROUP_OR_OTHERS) === 0) return undefined;
  chmodSync(dir, DEV_DIR_MODE);
  return `made ${dir} private (mode ${mode.toString(8)} → ${DEV_DIR_MODE.toString(8)})`;
}

export interface DevCredential {
  value: string;
  /** Set when an existing file's mode was tightened: a line for the log. */
  note?: string;
}

/**
 * The environment's value when given; else the value kept in `dir/file`, generated and written
 * (0600) the first time. An existing file that group or others could read is made 0600 first,
 * checked and read through one handle, so the file tightened is the file read.
 */
export function devCredential(dir: string, given: string | undefined, file: string, generate: () => string): DevCredential {
  if (given) return { value: given };
  const dirNote = ensurePrivateDir(dir);
  const path = join(dir, file);
  if (!existsSync(path)) {
    const value = generate();
    // `wx`: never write through a file (or a link) that appeared in the meantime.
    writeFileSync(path, `${value}\n`, { mode: DEV_FILE_MODE, flag: "wx" });
    if (hasModeBits) chmodSync(path, DEV_FILE_MODE);
    return dirNote ? { value, note: dirNote } : { value };
  }
  const fd = openSync(path, "r");
  try {
    const mode = fstatSync(fd).mode & 0o777;
    let note = dirNote;
    if (hasModeBits && (mode & GROUP_OR_OTHERS) !== 0) {
      chmodSync(path, DEV_FILE_MODE);
      note = [dirNote, `made ${path} private (mode ${mode.toString(8)} → ${DEV_FILE_MODE.toString(8)})`].filter(Boolean).join("; ");
    }
    const value = readFileSync(fd, "utf8").trim();
    return note ? { value, note } : { value };
  } finally {
    closeSync(fd);
  }
}
