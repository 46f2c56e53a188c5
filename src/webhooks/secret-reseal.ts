/**
 * Webhook signing secrets sealed in place, the secret itself unchanged (receivers keep verifying
 * with the same `whsec_` value): a legacy plain row gets sealed, a row sealed under an older listed
 * key gets re-sealed under the newest one. Two ways in (docs/webhooks.md#secrets-at-rest):
 *
 * - on use: a delivery attempt that read such a row writes it back (`resealOnUse`, from the run's
 *   webhook outbox); a failure is a WARN line and the next attempt tries again;
 * - in bulk: `POST /admin/v1/webhooks/seal-secrets` (`sealSecretsPage`), for endpoints that never
 *   deliver, deleted ones too (their row still holds the secret).
 *
 * Every write is one conditional UPDATE that only applies while the row still holds the value that
 * was read, so a rotation (or another re-seal) meanwhile is never overwritten.
 */
import { currentKeyId, resealSecret, SecretBoxError, webhookSecretAad } from "../shared/secret-box.ts";

/** Rows read per page, and UPDATEs per D1 batch. */
export const SEAL_PAGE_ROWS = 100;
/**
 * Pages per request: at most 5 SELECTs and 500 UPDATEs, under a Worker invocation's 1,000 D1
 * queries; a larger table is worked in several requests (`next`).
 */
export const SEAL_PAGES_PER_REQUEST = 5;

/** Writes `next` as the endpoint's stored secret only if the row still holds `read`. */
function replaceStoredSecret(d1: D1Database, organizationId: string, id: string, read: string, next: string): D1PreparedStatement {
  return d1
    .prepare("UPDATE webhook_endpoints SET secret = ? WHERE id = ? AND organization_id = ? AND secret = ?")
    .bind(next, id, organizationId, read);
}

/**
 * After a delivery attempt read `stored` (and opened it): seals it under the newest key when it is
 * legacy plain or under an older key. Never throws; a failure (keys missing or malformed, D1) is
 * logged at WARN and left to the next attempt.
 */
export async function resealOnUse(
  env: Pick<Env, "DB" | "WEBHOOK_SECRET_KEYS">,
  organizationId: string,
  endpointId: string,
  stored: string,
): Promise<void> {
  try {
    const next = await resealSecret(env.WEBHOOK_SECRET_KEYS, stored, webhookSecretAad(organizationId, endpointId));
    if (next) await replaceStoredSecret(env.DB, organizationId, endpointId, stored, next.value).run();
  } catch (err) {
    console.warn(
      JSON.stringify({
        level: "warn",
        message: "webhook secret not sealed on use; the next attempt tries again",
        organizationId,
        endpointId,
        error: err instanceof Error ? err.message : String(err),
      }),
    );
  }
}

/** What one request of the bulk operation did. */
export interface SealReport {
  /** Legacy plain values now sealed. */
  sealed: number;
  /** Values under an older key now sealed under the newest one. */
  resealed: number;
  /** Values already under the newest key (or written meanwhile by a rotation or a re-seal, which seal with it). */
  alreadyCurrent: number;
  /** Values that do not open (their key is not listed, or they were moved or altered): left as they are. */
  unreadable: Array<{ organizationId: string; webhookId: string; error: string }>;
  /** Pass as `after` to go on; null once every row has been seen. */
  next: string | null;
}

/**
 * Seals, in bounded batches, the rows after endpoint id `after` (up to SEAL_PAGES_PER_REQUEST
 * pages of SEAL_PAGE_ROWS). The keys are checked before anything is read, so with missing or
 * malformed keys this throws (SecretBoxError) having written nothing. Idempotent.
 */
export async function sealSecretsPage(d1: D1Database, keys: string | undefined, after = ""): Promise<SealReport> {
  await currentKeyId(keys); // missing or malformed keys: thrown here, before any read or write
  const report: SealReport = { sealed: 0, resealed: 0, alreadyCurrent: 0, unreadable: [], next: null };
  let cursor = after;
  for (let page = 0; page < SEAL_PAGES_PER_REQUEST; page++) {
    const rows = (
      await d1
        .prepare("SELECT id, organization_id, secret FROM webhook_endpoints WHERE id > ? ORDER BY id LIMIT ?")
        .bind(cursor, SEAL_PAGE_ROWS)
        .all<{ id: string; organization_id: string; secret: string }>()
    ).results;
    const writes: Array<{ kind: "sealed" | "resealed"; statement: D1PreparedStatement }> = [];
    for (const row of rows) {
      try {
        const next = await resealSecret(keys, row.secret, webhookSecretAad(row.organization_id, row.id));
        if (next) writes.push({ kind: next.kind, statement: replaceStoredSecret(d1, row.organization_id, row.id, row.secret, next.value) });
        else report.alreadyCurrent++;
      } catch (err) {
        if (!(err instanceof SecretBoxError)) throw err;
        report.unreadable.push({ organizationId: row.organization_id, webhookId: row.id, error: err.message });
      }
    }
    if (writes.length > 0) {
      const results = await d1.batch(writes.map((w) => w.statement));
      results.forEach((result, i) => {
        if (result.meta.changes === 0) report.alreadyCurrent++;
        else report[writes[i]!.kind]++;
      });
    }
    if (rows.length < SEAL_PAGE_ROWS) return report;
    cursor = rows[rows.length - 1]!.id;
  }
  report.next = cursor;
  return report;
}
