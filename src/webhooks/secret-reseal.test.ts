import { describe, expect, it } from "vitest";
import { firstFailureWarning } from "./secret-reseal.ts";

describe("firstFailureWarning (the on-use write-back's WARN, once per endpoint and reason)", () => {
  it("says yes the first time for a key, no after that; another key gets its own yes", () => {
    const warned = new Set<string>();
    expect(firstFailureWarning(warned, "org_a whk_1 secret_keys_missing")).toBe(true);
    expect(firstFailureWarning(warned, "org_a whk_1 secret_keys_missing")).toBe(false);
    expect(firstFailureWarning(warned, "org_a whk_1 secret_keys_missing")).toBe(false);
    expect(firstFailureWarning(warned, "org_a whk_2 secret_keys_missing")).toBe(true);
    // The same endpoint failing for another reason is news.
    expect(firstFailureWarning(warned, "org_a whk_1 write_failed")).toBe(true);
    expect(warned.size).toBe(3);
  });

  it("stays bounded: past `max` keys the oldest is forgotten (and may warn once more), the newest are kept", () => {
    const warned = new Set<string>();
    for (const key of ["k1", "k2", "k3"]) expect(firstFailureWarning(warned, key, 3)).toBe(true);
    expect(firstFailureWarning(warned, "k4", 3)).toBe(true);
    expect([...warned]).toEqual(["k2", "k3", "k4"]);
    expect(firstFailureWarning(warned, "k4", 3)).toBe(false);
    expect(firstFailureWarning(warned, "k1", 3)).toBe(true);
    expect(warned.size).toBe(3);
  });
});
