import { afterEach, describe, expect, it, vi } from "vitest";
import { runStream, runStreamPlacement } from "./run-stream-client.ts";

/** A namespace that records what get() was given (placement is decided by the options alone). */
function recordingNamespace() {
  const gets: Array<{ id: string; options: unknown }> = [];
  const ns = {
    idFromName: (name: string) => `id:${name}`,
    get: (id: string, options?: unknown) => {
      gets.push({ id, options });
      return {};
    },
  };
  return { ns, gets };
}

describe("where RunStream DOs are created (RUN_STREAM_LOCATION_HINT)", () => {
  afterEach(() => vi.restoreAllMocks());

  it("passes a configured location hint to every get, and none when the var is empty", () => {
    for (const [hint, options] of [
      ["enam", { locationHint: "enam" }],
      [" weur ", { locationHint: "weur" }],
      ["apac-ne", { locationHint: "apac-ne" }],
      ["", undefined],
    ] as const) {
      const { ns, gets } = recordingNamespace();
      runStream({ RUN_STREAM: ns, RUN_STREAM_LOCATION_HINT: hint } as unknown as Env, "hello-1");
      expect(gets).toEqual([{ id: "id:hello-1", options }]);
    }
  });

  it("ignores a value that is not a location hint, and reports it once per value", () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
    for (const bad of ["us-east", "ENAM", "__proto__", "enam,weur"]) {
      expect(runStreamPlacement({ RUN_STREAM_LOCATION_HINT: bad })).toBeUndefined();
      expect(runStreamPlacement({ RUN_STREAM_LOCATION_HINT: bad })).toBeUndefined();
    }
    expect(error).toHaveBeenCalledTimes(4);
    expect(String(error.mock.calls[0]![0])).toContain("RUN_STREAM_LOCATION_HINT");
  });
});
