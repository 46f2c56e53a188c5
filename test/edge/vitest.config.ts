import { resolve } from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { buildAssets } from "../../scripts/build-assets.ts";
import { startWebhookReceiver } from "../support/webhook-receiver.ts";

const root = resolve(import.meta.dirname, "../..");

// Edge tests run inside workerd with the Worker's real bindings (local D1, Durable Objects).
// HOST_URL points at a closed port: these tests cover everything the edge decides on its own,
// and how it behaves when the host cannot be reached. test/e2e covers the real host.
// Test-only secret (the second value exercises rotation). Read by wrangler's secrets.required.
process.env.HOST_SHARED_SECRET = "edge-test-host-shared-secret-long-enough-for-hmac,edge-test-old-host-shared-secret-long-enough-for-hmac";
process.env.STREAM_TOKEN_SECRET = "edge-test-stream-token-secret-long-enough-for-hs256";
process.env.ADMIN_API_KEY = "edge-test-admin-key-of-32-characters,edge-test-old-admin-key-of-32-characters";
process.env.INTERNAL_SERVICE_SECRET = "edge-test-internal-secret-of-32-characters";
process.env.JWT_SECRET = "edge-test-jwt-secret-at-least-32-bytes-long";
// Test-only keys (32 bytes each): "edge2" encrypts, "edge1" is an older key still listed for decryption.
process.env.WEBHOOK_SECRET_KEYS = `edge2:${Buffer.alloc(32, 2).toString("base64")},edge1:${Buffer.alloc(32, 1).toString("base64")}`;

export default defineConfig(async () => {
  // wrangler.toml serves build/assets as static assets; wrangler's [build] makes it, vitest does not run that.
  await buildAssets();
  const migrations = await readD1Migrations(resolve(root, "migrations"));
  // Webhook deliveries in edge tests go to a scripted receiver on a random local port, which also
  // answers webhook hosts' DNS lookups.
  const receiver = await startWebhookReceiver();
  return {
    root,
    plugins: [
      cloudflareTest({
        wrangler: { configPath: resolve(root, "wrangler.toml") },
        miniflare: {
          // An empty D1 of its own for the migration tests (test/edge/d1-migrations.test.ts).
          d1Databases: { MIGRATION_TEST_DB: "migration-test" },
          bindings: {
            TEST_MIGRATIONS: migrations,
            HOST_URL: "http://127.0.0.1:9",
            CORS_ORIGINS: "https://app.example,https://other.example",
            SSE_KEEPALIVE_MS: "200", // short, so a test can see keep-alives without waiting 20 s
            RUN_STREAM_MAX_SUBSCRIBERS: "200", // the most any edge test opens on one run, so a test can fill a run
            MAX_OPEN_STREAMS_PER_KEY: "250", // above the 200 a run takes, so a test can fill a key over two runs
            WEBHOOK_TEST_RECEIVER: receiver.url,
            WEBHOOK_ALLOW_LOOPBACK_HTTP: "1",
            WEBHOOK_DNS_RESOLVER: `${receiver.url}/dns-query`, // the receiver's scripted zone (no internet here)
            WEBHOOK_RETRY_BASE_MS: "200", // retries after 0.2 s, 1 s, 5 s: a test sees three attempts in ~1.2 s
          },
        },
      }),
    ],
    test: {
      include: ["test/edge/**/*.test.ts", "src/**/*.test.ts"],
      setupFiles: ["test/edge/apply-migrations.ts"],
      // Not vitest's 5 s: several tests wait on purpose (a 3 s catch-up) or make hundreds of calls
      // into workerd, which shares two cores with the rest of the suite; a test that hangs still fails.
      testTimeout: 20_000,
    },
  };
});
