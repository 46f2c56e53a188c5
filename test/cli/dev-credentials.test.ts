import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { devCredential, ensurePrivateDir } from "../../scripts/dev-credentials.ts";

// The dev-only credentials `npm run dev` keeps in .outrider/: private to their owner, whatever the
// umask or an older checkout left, so that the admin CLI (which refuses a file others can read)
// can use them. POSIX mode bits only: Windows has none to check.
describe.runIf(process.platform !== "win32")("dev credentials in .outrider/", () => {
  let base: string;
  let dir: string;
  const modeOf = (path: string) => statSync(path).mode & 0o777;
  let umaskBefore: number;

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "dev-credentials-"));
    dir = join(base, ".outrider");
    // The loosest usual umask: what mkdir and writeFile get without an explicit chmod.
    umaskBefore = process.umask(0o002);
  });
  afterEach(() => {
    process.umask(umaskBefore);
    rmSync(base, { recursive: true, force: true });
  });

  describe("happy", () => {
    it("a new credential is generated once, in a 0700 folder and a 0600 file, and read back the next time", () => {
      const first = devCredential(dir, undefined, "dev-admin-key", () => "generated-value");
      expect(first).toEqual({ value: "generated-value" });
      expect(modeOf(dir).toString(8)).toBe("700");
      expect(modeOf(join(dir, "dev-admin-key")).toString(8)).toBe("600");
      const again = devCredential(dir, undefined, "dev-admin-key", () => "another-value");
      expect(again).toEqual({ value: "generated-value" });
    });

    it("a value from the environment wins and nothing is written", () => {
      expect(devCredential(dir, "from-env", "dev-admin-key", () => "generated-value")).toEqual({ value: "from-env" });
      expect(() => statSync(dir)).toThrow();
    });
  });

  describe("security", () => {
    it("an existing file group or others can read is made 0600 before it is used, and the log says so", () => {
      mkdirSync(dir, { mode: 0o700 });
      chmodSync(dir, 0o700);
      for (const mode of [0o644, 0o640, 0o604, 0o666]) {
        const path = join(dir, "dev-internal-secret");
        writeFileSync(path, "kept-secret\n");
        chmodSync(path, mode);
        const got = devCredential(dir, undefined, "dev-internal-secret", () => "never");
        expect(got.value).toBe("kept-secret");
        expect(got.note).toBe(`made ${path} private (mode ${mode.toString(8)} → 600)`);
        expect(modeOf(path).toString(8)).toBe("600");
        expect(readFileSync(path, "utf8")).toBe("kept-secret\n");
      }
    });

    it("an existing folder others can list is made 0700, and a file already 0600 is left as it is", () => {
      mkdirSync(dir);
      chmodSync(dir, 0o755);
      const path = join(dir, "dev-api-key");
      writeFileSync(path, "kept-key\n", { mode: 0o600 });
      chmodSync(path, 0o600);
      const got = devCredential(dir, undefined, "dev-api-key", () => "never");
      expect(got).toEqual({ value: "kept-key", note: `made ${dir} private (mode 755 → 700)` });
      expect(modeOf(dir).toString(8)).toBe("700");
      expect(ensurePrivateDir(dir)).toBeUndefined();
    });
  });
});
