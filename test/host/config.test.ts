/** The host's configuration as host/config.ts reads it from the environment. */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../host/config.ts";
import { MIN_SECRET_LENGTH } from "../../src/shared/signing.ts";

// Test-only values.
const LONG = "host-config-test-secret-long-enough-for-hmac";
const SHORT = "s".repeat(MIN_SECRET_LENGTH - 1);

describe("HOST_SHARED_SECRET", () => {
  it("takes a comma-separated list of values of at least MIN_SECRET_LENGTH characters, the first one first", () => {
    const exact = "e".repeat(MIN_SECRET_LENGTH);
    expect(loadConfig({ HOST_SHARED_SECRET: exact }).sharedSecrets).toEqual([exact]);
    expect(loadConfig({ HOST_SHARED_SECRET: ` ${LONG}, ${exact} ` }).sharedSecrets).toEqual([LONG, exact]);
  });

  it("refuses to start without it", () => {
    for (const value of [undefined, "", " , "])
      expect(() => loadConfig({ HOST_SHARED_SECRET: value })).toThrow(/HOST_SHARED_SECRET is not set/);
  });

  it("security: refuses to start with a value shorter than MIN_SECRET_LENGTH (guessable offline from one signed request), naming the variable and the minimum, never the value", () => {
    for (const value of ["x", SHORT, `${LONG},${SHORT}`, `${SHORT},${LONG}`]) {
      const err = (() => {
        try {
          loadConfig({ HOST_SHARED_SECRET: value });
        } catch (e) {
          return e as Error;
        }
        return null;
      })();
      expect(err, value.length.toString()).toBeInstanceOf(Error);
      expect(err!.message).toContain("HOST_SHARED_SECRET");
      expect(err!.message).toContain(`at least ${MIN_SECRET_LENGTH} characters`);
      expect(err!.message).not.toContain(SHORT);
      expect(err!.message).not.toContain(LONG);
    }
  });
});
