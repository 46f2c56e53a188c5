declare namespace Cloudflare {
  interface Env {
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
    /** Base URL of the scripted webhook receiver (test/support/webhook-receiver.ts). */
    WEBHOOK_TEST_RECEIVER: string;
  }
}
