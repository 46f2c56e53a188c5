import { createServer } from "node:http";
import { exportJWK, generateKeyPair } from "jose";
import type { TestProject } from "vitest/node";
import { startStack } from "../support/stack.ts";

declare module "vitest" {
  export interface ProvidedContext {
    baseUrl: string;
    apiKey: string;
    adminKey: string;
    stateDir: string;
    temporalAddress: string;
    localLlmUrl: string;
    /** Private JWK (RS256, kid "e2e-key") whose public half the stack's JWT_JWKS_URL serves. */
    jwksPrivateKey: string;
  }
}

/** A JWKS endpoint like an identity provider's, so Workflow Runs API JWTs are verified the remote way. */
async function startJwksServer(port: number) {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "e2e-key", alg: "RS256", use: "sig" };
  const server = createServer((req, res) => {
    res.writeHead(req.url === "/.well-known/jwks.json" ? 200 : 404, { "content-type": "application/json" });
    res.end(req.url === "/.well-known/jwks.json" ? JSON.stringify({ keys: [jwk] }) : "{}");
  });
  await new Promise<void>((ok) => server.listen(port, "127.0.0.1", ok));
  return { url: `http://127.0.0.1:${port}/.well-known/jwks.json`, privateJwk: JSON.stringify({ ...(await exportJWK(privateKey)), kid: "e2e-key", alg: "RS256" }), close: () => server.close() };
}

export default async function setup(project: TestProject) {
  const jwks = await startJwksServer(Number(process.env.E2E_JWKS_PORT ?? 8803));
  const stack = await startStack(
    {
      edge: Number(process.env.E2E_EDGE_PORT ?? 8797),
      host: Number(process.env.E2E_HOST_PORT ?? 8798),
      temporal: Number(process.env.E2E_TEMPORAL_PORT ?? 7237),
    },
    // Webhook retries after 0.5 s, 2.5 s, ... so a test sees them quickly.
    { env: { JWT_JWKS_URL: jwks.url, WEBHOOK_RETRY_BASE_MS: "500" } },
  );
  project.provide("baseUrl", stack.baseUrl);
  project.provide("apiKey", stack.apiKey);
  project.provide("adminKey", stack.adminKey);
  project.provide("stateDir", stack.stateDir);
  project.provide("temporalAddress", stack.temporalAddress);
  project.provide("localLlmUrl", stack.localLlmUrl);
  project.provide("jwksPrivateKey", jwks.privateJwk);
  return async () => {
    await stack.stop();
    jwks.close();
  };
}
