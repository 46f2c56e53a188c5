import { describe, expect, it } from "vitest";
import { DEFAULT_RUN_WAIT_MS, runWaitDefaultMs } from "./run.ts";

describe("POST /workflow/run's default wait", () => {
  it("is RUN_WAIT_DEFAULT_MS when it is a positive number", () => {
    expect(runWaitDefaultMs({ RUN_WAIT_DEFAULT_MS: "1500" })).toBe(1500);
  });

  it("falls back to Output's 300 s when the var is unset, empty, zero, negative or not a number (never NaN)", () => {
    for (const value of [undefined, "", "0", "-5", "soon", "Infinity"]) {
      expect(runWaitDefaultMs({ RUN_WAIT_DEFAULT_MS: value as string })).toBe(DEFAULT_RUN_WAIT_MS);
    }
    expect(DEFAULT_RUN_WAIT_MS).toBe(300_000);
  });
});
