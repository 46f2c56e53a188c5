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

describe("settings checked when the host starts", () => {
  const withSecret = (env: NodeJS.ProcessEnv) => ({ HOST_SHARED_SECRET: LONG, ...env });
  const refusal = (env: NodeJS.ProcessEnv) => {
    try {
      loadConfig(withSecret(env));
    } catch (e) {
      return (e as Error).message;
    }
    return null;
  };

  it("HOST_PORT: a port from 1 to 65535; unset or empty is 8788; anything else stops the host, naming it (not a random port, nor NaN)", () => {
    expect(loadConfig(withSecret({})).port).toBe(8788);
    expect(loadConfig(withSecret({ HOST_PORT: "" })).port).toBe(8788);
    expect(loadConfig(withSecret({ HOST_PORT: " 9000 " })).port).toBe(9000);
    expect(loadConfig(withSecret({ HOST_PORT: "" })).runEventJournalPath).toMatch(/host-run-events-8788\.sqlite$/);
    for (const value of ["0", "abc", "65536", "80.5", "-1", "0x50"]) expect(refusal({ HOST_PORT: value }), value).toContain("HOST_PORT");
  });

  it("HTTP_REQUEST_COST_USD: a number of 0 or more; a negative, infinite or unreadable one stops the host (its attributes would be refused after each request)", () => {
    expect(loadConfig(withSecret({})).httpRequestCost).toBe(0);
    expect(loadConfig(withSecret({ HTTP_REQUEST_COST_USD: "0.002" })).httpRequestCost).toBe(0.002);
    expect(loadConfig(withSecret({ HTTP_REQUEST_COST_USD: "1e-3" })).httpRequestCost).toBe(0.001);
    // Decimal only (as HOST_PORT): Number() reads "0x10" as 16 USD. At most what an attribute may carry (MAX_ATTRIBUTE_NUMBER).
    for (const value of ["-0.01", "1e400", "cheap", "0x10", "0b1", "0o7", "2e12"])
      expect(refusal({ HTTP_REQUEST_COST_USD: value }), value).toContain("HTTP_REQUEST_COST_USD");
  });

  it("EDGE_URL: an http(s) URL, else the host stops naming it (not a push that fails for ever)", () => {
    expect(loadConfig(withSecret({ EDGE_URL: "https://api.example.com" })).edgeUrl).toBe("https://api.example.com");
    for (const value of ["api.example.com", "ftp://x", "http//x"]) expect(refusal({ EDGE_URL: value }), value).toContain("EDGE_URL");
  });
});
