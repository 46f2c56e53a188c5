import { describe, expect, it } from "vitest";
import { setBounded } from "./bounded-map.ts";

describe("setBounded", () => {
  it("drops the oldest entry once the map is full", () => {
    const map = new Map<string, number>();
    for (const [i, key] of ["a", "b", "c", "d"].entries()) setBounded(map, key, i, 3);
    expect([...map.keys()]).toEqual(["b", "c", "d"]);
  });

  it("moves a key set again to the back, and drops nothing for it", () => {
    const map = new Map([
      ["a", 1],
      ["b", 2],
      ["c", 3],
    ]);
    setBounded(map, "a", 10, 3);
    expect([...map.entries()]).toEqual([
      ["b", 2],
      ["c", 3],
      ["a", 10],
    ]);
    setBounded(map, "d", 4, 3);
    expect([...map.keys()]).toEqual(["c", "a", "d"]);
  });

  it("brings a map over its bound back under it", () => {
    const map = new Map([1, 2, 3, 4, 5].map((n) => [n, n]));
    setBounded(map, 6, 6, 3);
    expect([...map.keys()]).toEqual([4, 5, 6]);
  });
});
