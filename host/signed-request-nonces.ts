/**
 * The nonces of signed requests the control API accepted, kept in the host's SQLite file (the run
 * event journal's, HOST_RUN_EVENT_JOURNAL) until their signature expires: a request captured on
 * its way (a TLS-terminating proxy, a logged header) is refused when replayed, also after the
 * host restarted within its signature's lifetime, which an in-memory set forgot.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";

/** Expired nonces are deleted at most this often (a claim does it, in the same file). */
const SWEEP_INTERVAL_MS = 60_000;

export class SignedRequestNonces {
  private readonly db: DatabaseSync;
  private readonly claimStatement: StatementSync;
  private lastSweep = 0;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new DatabaseSync(path);
    this.db.exec(`PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS signed_request_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)`);
    // A nonce still in its lifetime is taken; one whose signature has expired may be claimed again.
    this.claimStatement = this.db.prepare(
      `INSERT INTO signed_request_nonces (nonce, expires_at) VALUES (?, ?)
       ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at WHERE signed_request_nonces.expires_at < ?
       RETURNING 1 AS claimed`,
    );
  }

  /** true the first time a nonce is claimed within its lifetime; false for a replay. */
  claim(nonce: string, expiresAt: number, now = Date.now()): boolean {
    if (now - this.lastSweep >= SWEEP_INTERVAL_MS) {
      this.lastSweep = now;
      this.db.prepare("DELETE FROM signed_request_nonces WHERE expires_at < ?").run(now);
    }
    return this.claimStatement.get(nonce, expiresAt, now) !== undefined;
  }

  close(): void {
    this.db.close();
  }
}
