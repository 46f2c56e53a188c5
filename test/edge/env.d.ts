declare namespace Cloudflare {
  interface Env {
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
    /** An empty D1 for the migration tests (test/edge/d1-migrations.test.ts), not the Worker's. */
    MIGRATION_TEST_DB: D1Database;
    /** Base URL of the scripted webhook receiver (test/support/webhook-receiver.ts). */
    WEBHOOK_TEST_RECEIVER: string;
  }
}
