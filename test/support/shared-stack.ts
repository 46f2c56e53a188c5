/**
 * The one stack of the e2e, cli, browser and fuzz layers.
 *
 * `npm test` (scripts/test-all.ts) starts it once, before the first of these layers, and passes it
 * to each layer in OUTRIDER_TEST_STACK (JSON: URL, keys, state directory...); it stops it after the
 * last one. A layer run on its own (`npm run test:e2e`) finds no OUTRIDER_TEST_STACK and its global
 * setup starts the same stack for itself.
 *
 * The stack is a superset of what each layer needs: a JWKS endpoint for RS256 Workflow Runs API
 * JWTs (e2e), the HS256 TEST_JWT_SECRET (e2e, fuzz), and an LLM pacer in front of the local LLM
 * server, unpaced unless a layer asks (the browser layer paces it while its tests run).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair } from "jose";
import { startLlmPacer } from "./llm-pacer.ts";
import { freeStackPorts, type RunningStack, startStack, TEST_JWT_AUDIENCE } from "./stack.ts";

export const SHARED_STACK_ENV = "OUTRIDER_TEST_STACK";

/** What a layer gets of the stack (JSON in OUTRIDER_TEST_STACK): the running stack's addresses and keys, plus the shared extras. */
export interface SharedStack
  extends Pick<RunningStack, "baseUrl" | "apiKey" | "adminKey" | "internalSecret" | "stateDir" | "temporalAddress" | "localLlmUrl"> {
  /** Origin of the LLM pacer the host goes through (setPacerDelay). */
  llmPacerOrigin: string;
  /** Private JWK (RS256, kid "e2e-key") whose public half the stack's JWT_JWKS_URL serves. */
  jwksPrivateKey: string;
}

/** A JWKS endpoint like an identity provider's, so Workflow Runs API JWTs are verified the remote way. */
async function startJwksServer() {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: "e2e-key", alg: "RS256", use: "sig" };
  const server = createServer((req, res) => {
    res.writeHead(req.url === "/.well-known/jwks.json" ? 200 : 404, { "content-type": "application/json" });
    res.end(req.url === "/.well-known/jwks.json" ? JSON.stringify({ keys: [jwk] }) : "{}");
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    privateJwk: JSON.stringify({ ...(await exportJWK(privateKey)), kid: "e2e-key", alg: "RS256" }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Starts the shared stack (and its JWKS endpoint and LLM pacer). */
export async function startSharedStack(): Promise<{ stack: SharedStack; stop(): Promise<void> }> {
  const ports = await freeStackPorts();
  const jwks = await startJwksServer();
  const pacer = await startLlmPacer(`http://127.0.0.1:${ports.localLlm}`, 0);
  try {
    // Webhook retries after 0.5 s, 2.5 s, ... so a test sees them quickly.
    const running = await startStack({
      ports,
      env: { JWT_JWKS_URL: jwks.url, JWT_AUDIENCE: TEST_JWT_AUDIENCE, LOCAL_LLM_URL: pacer.url, WEBHOOK_RETRY_BASE_MS: "500" },
    });
    const stack: SharedStack = {
      baseUrl: running.baseUrl,
      apiKey: running.apiKey,
      adminKey: running.adminKey,
      internalSecret: running.internalSecret,
      stateDir: running.stateDir,
      temporalAddress: running.temporalAddress,
      localLlmUrl: running.localLlmUrl,
      llmPacerOrigin: pacer.origin,
      jwksPrivateKey: jwks.privateJwk,
    };
    return {
      stack,
      async stop() {
        await running.stop();
        await pacer.close();
        await jwks.close();
      },
    };
  } catch (err) {
    await pacer.close();
    await jwks.close();
    throw err;
  }
}

/** The stack `npm test` passed down in OUTRIDER_TEST_STACK, else a new one (stop() stops only that). */
export async function useSharedStack(): Promise<{ stack: SharedStack; stop(): Promise<void>; own: boolean }> {
  const given = process.env[SHARED_STACK_ENV];
  if (given) return { stack: JSON.parse(given) as SharedStack, stop: async () => {}, own: false };
  return { ...(await startSharedStack()), own: true };
}
