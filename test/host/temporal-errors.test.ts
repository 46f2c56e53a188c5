/**
 * The host's reading of Temporal client errors. The outage test with a real Temporal going away is
 * in control-api-temporal-errors.test.ts; this file pins that the reading goes by codes, not text.
 */
import { createConnection } from "node:net";
import { ServiceError } from "@temporalio/client";
import { describe, expect, it } from "vitest";
import { GRPC, isTemporalOutage } from "../../host/temporal-errors.ts";

/** A gRPC status error as @grpc/grpc-js makes it (callErrorFromStatus): code and details on an Error. */
const grpcError = (code: number, details: string) => Object.assign(new Error(`${code} ${details}`), { code, details, metadata: {} });

/** A real socket error of Node's: a connection to a port nothing listens on. */
async function refusedConnection(): Promise<Error> {
  const probe = createConnection({ host: "127.0.0.1", port: 1 });
  return await new Promise<Error>((resolve) => probe.once("error", resolve));
}

describe("isTemporalOutage", () => {
  it("is true for gRPC UNAVAILABLE, on the error or on the cause a ServiceError wraps", () => {
    const unavailable = grpcError(GRPC.UNAVAILABLE, "No connection established");
    expect(isTemporalOutage(unavailable)).toBe(true);
    expect(isTemporalOutage(new ServiceError("Failed to start Workflow", { cause: unavailable }))).toBe(true);
  });

  it("is true for a socket Node could not open, wrapped or not", async () => {
    const refused = await refusedConnection();
    expect((refused as Error & { code?: string }).code).toBe("ECONNREFUSED");
    expect(isTemporalOutage(refused)).toBe(true);
    expect(isTemporalOutage(new Error("request failed", { cause: refused }))).toBe(true);
  });

  it("security: is false for a refusal whose text mentions connecting or unavailability (a tenant's names can be in it)", () => {
    const refusal = grpcError(GRPC.INVALID_ARGUMENT, "workflow id connect-UNAVAILABLE-ECONNREFUSED is not valid");
    expect(isTemporalOutage(refusal)).toBe(false);
    expect(isTemporalOutage(new ServiceError("Failed to signal Workflow connect-1", { cause: refusal }))).toBe(false);
    expect(isTemporalOutage(new Error("step could not connect to the CRM: UNAVAILABLE"))).toBe(false);
    expect(isTemporalOutage(undefined)).toBe(false);
    expect(isTemporalOutage("ECONNREFUSED")).toBe(false);
  });
});
