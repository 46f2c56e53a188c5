/**
 * Webhook signing secrets sealed in place, the secret itself unchanged (receivers keep verifying
 * with the same `whsec_` value): a legacy plain row gets sealed, a row sealed under an older listed
 * key gets re-sealed under the newest one. Two ways in (docs/webhooks.md#secrets-at-rest):
 *
 * - on use: a delivery attempt that read such a row writes it back (`resealOnUse`, from the run's
 *   webhook outbox); a failure is a WARN line (once per endpoint and reason per isolate) and the
 *   next attempt tries again;
 * - in bulk: `POST /admin/v1/webhooks/seal-secrets` (`sealSecretsPage`), for endpoints that never
 *   deliver, deleted ones too (their row still holds the secret).
 *
 * Both of a row's values are: its secret, and the one a rotation replaced while it still signs
 * beside it (`previous_secret`, until `previous_secret_expires_at`); a replaced secret whose time
 * has passed is dropped instead, as it never signs again. So once every row has been through
 * either way, no column holds a value under an older key, and that key can be dropped.
 *
 * Every write is one conditional UPDATE that only applies while the row still holds the values
 * that were read, so a rotation (or another re-seal) meanwhile is never overwritten.
 */
import { currentKeyId, resealSecret, SecretBoxError, webhookSecretAad } from "../shared/secret-box.ts";

/**
 * Rows one bulk call reads and may write (`limit`), and its bounds. A call makes at most
 * `1 + limit` D1 queries: one SELECT of up to `limit` rows, then one UPDATE per row that needs
 * sealing, sent in D1 batches of SEAL_BATCH_UPDATES (each statement of a batch counted as a query,
 * the conservative reading of Cloudflare's limit). Cloudflare allows 1,000 queries per Worker
 * invocation on the Workers Paid plan and 50 on the Free plan: the default (500, at most 501
 * queries) fits Paid; 40 (at most 41) fits Free with room to spare, 49 is the most that does.
 * A larger table is worked in several calls (`next`).
 */
export const SEAL_LIMIT_DEFAULT = 500;
export const SEAL_LIMIT_MIN = 1;
export const SEAL_LIMIT_MAX = 500;
/** UPDATEs per D1 batch (one round trip each). */
export const SEAL_BATCH_UPDATES = 100;

/** The most D1 queries a bulk call with this `limit` makes (what docs/webhooks.md promises). */
export const sealQueryBudget = (limit: number) => 1 + limit;

/** An endpoint row's stored signing values, as read. */
export interface StoredSecrets {
  secret: string;
  /** The secret a rotation replaced, sealed; it signs beside `secret` until `previousSecretExpiresAt`. */
  previousSecret: string | null;
  previousSecretExpiresAt: string | null;
}

/**
 * Whether a rotation's replaced secret still signs beside the current one at `now`: until its
 * `previous_secret_expires_at`; past it, or without one, never again (a delivery leaves it out,
 * a re-seal drops it).
 */
export function previousSecretSigns(expiresAt: string | null, now: number): boolean {
  return expiresAt !== null && Date.parse(expiresAt) > now;
}

/** What a re-seal writes back for one row (`next`, when `changed`), and how its current secret was stored. */
interface Resealed {
  /** `sealed`: the secret was legacy plain; `resealed`: it, or the replaced secret, moved to the newest key (or an ended overlap's secret was dropped). */
  kind: "sealed" | "resealed";
  changed: boolean;
  next: StoredSecrets;
  /** The replaced secret did not open (its key is not listed, or it was moved or altered): left as it is. */
  previousUnreadable: SecretBoxError | null;
}

/**
 * The row's values under the newest key (unchanged when they already are). A current secret that
 * does not open throws (SecretBoxError); a replaced one is left as it is.
 */
async function resealedSecrets(keys: string | undefined, read: StoredSecrets, aad: string, now: number): Promise<Resealed> {
  const current = await resealSecret(keys, read.secret, aad);
  const next: StoredSecrets = { ...read, secret: current?.value ?? read.secret };
  let previousMoved = false;
  let previousUnreadable: SecretBoxError | null = null;
  if (read.previousSecret !== null) {
    if (!previousSecretSigns(read.previousSecretExpiresAt, now)) {
      next.previousSecret = null;
      next.previousSecretExpiresAt = null;
      previousMoved = true;
    } else {
      try {
        const previous = await resealSecret(keys, read.previousSecret, aad);
        if (previous) {
          next.previousSecret = previous.value;
          previousMoved = true;
        }
      } catch (err) {
        if (!(err instanceof SecretBoxError)) throw err;
        previousUnreadable = err;
      }
    }
  }
  return { kind: current?.kind ?? "resealed", changed: current !== null || previousMoved, next, previousUnreadable };
}

/** Writes `next` as the endpoint's stored values only if the row still holds `read`. */
function replaceStoredSecrets(
  d1: D1Database,
  organizationId: string,
  id: string,
  read: StoredSecrets,
  next: StoredSecrets,
): D1PreparedStatement {
  return d1
    .prepare(
      "UPDATE webhook_endpoints SET secret = ?, previous_secret = ?, previous_secret_expires_at = ? " +
        "WHERE id = ? AND organization_id = ? AND secret = ? AND previous_secret IS ? AND previous_secret_expires_at IS ?",
    )
    .bind(
      next.secret,
      next.previousSecret,
      next.previousSecretExpiresAt,
      id,
      organizationId,
      read.secret,
      read.previousSecret,
      read.previousSecretExpiresAt,
    );
}

/**
 * Most endpoints whose failed write-back this isolate remembers (see `firstFailureWarning`); past
 * it the oldest is forgotten (and may warn once more), so a long-lived isolate stays bounded.
 */
export const RESEAL_WARNED_MAX = 10_000;

/**
 * Whether a failed write-back should be logged: once per endpoint and reason per isolate, for
 * isolates hold many run DOs. While WEBHOOK_SECRET_KEYS is missing, a legacy plain row still
 * delivers and every attempt fails to seal it; a WARN per attempt (retries, every run of the
 * organization) would bury the log in one repeated line. The operator needs one line per endpoint
 * to act on (the keys problem is also logged as an error by deliveries of sealed rows); the write
 * is still tried on every attempt. `warned` holds `<orgId> <endpointId> <reason>` keys, oldest first.
 */
export function firstFailureWarning(warned: Set<string>, key: string, max = RESEAL_WARNED_MAX): boolean {
  if (warned.has(key)) return false;
  if (warned.size >= max) warned.delete(warned.values().next().value!);
  warned.add(key);
  return true;
}

/** Endpoints (and reasons) this isolate has already warned about; see `firstFailureWarning`. */
const resealFailuresWarned = new Set<string>();

/**
 * After a delivery attempt read `stored` (and opened its secret): seals the secret, and the
 * replaced one while it still signs, under the newest key when either is legacy plain or under an
 * older key; drops a replaced secret whose time has passed. Never throws; a failure (keys missing
 * or malformed, D1) is logged at WARN, once per endpoint and reason per isolate, and left to the
 * next attempt. A replaced secret that does not open is left as it is (the attempt warned of it).
 */
export async function resealOnUse(
  env: Pick<Env, "DB" | "WEBHOOK_SECRET_KEYS">,
  organizationId: string,
  endpointId: string,
  stored: StoredSecrets,
  now = Date.now(),
): Promise<void> {
  try {
    const resealed = await resealedSecrets(env.WEBHOOK_SECRET_KEYS, stored, webhookSecretAad(organizationId, endpointId), now);
    if (resealed.changed) {
      await replaceStoredSecrets(env.DB, organizationId, endpointId, stored, resealed.next).run();
    }
  } catch (err) {
    const reason = err instanceof SecretBoxError ? err.code : "write_failed";
    if (!firstFailureWarning(resealFailuresWarned, `${organizationId} ${endpointId} ${reason}`)) return;
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
  /** Values that do not open (their key is not listed, or they were moved or altered): left as they are. A replaced secret's `error` says so. */
  unreadable: Array<{ organizationId: string; webhookId: string; error: string }>;
  /** Pass as `after` to go on; null once every row has been seen. */
  next: string | null;
}

/**
 * Seals the first `limit` rows after endpoint id `after`, by id, writing in D1 batches of
 * SEAL_BATCH_UPDATES: at most sealQueryBudget(limit) queries. The keys are checked before
 * anything is read, so with missing or malformed keys this throws (SecretBoxError) having written
 * nothing. Idempotent.
 */
export async function sealSecretsPage(
  d1: D1Database,
  keys: string | undefined,
  after = "",
  limit = SEAL_LIMIT_DEFAULT,
): Promise<SealReport> {
  if (!Number.isInteger(limit) || limit < SEAL_LIMIT_MIN || limit > SEAL_LIMIT_MAX)
    throw new RangeError(`limit must be an integer from ${SEAL_LIMIT_MIN} to ${SEAL_LIMIT_MAX}`);
  await currentKeyId(keys); // missing or malformed keys: thrown here, before any read or write
  const report: SealReport = { sealed: 0, resealed: 0, alreadyCurrent: 0, unreadable: [], next: null };
  const rows = (
    await d1
      .prepare(
        "SELECT id, organization_id, secret, previous_secret, previous_secret_expires_at FROM webhook_endpoints WHERE id > ? ORDER BY id LIMIT ?",
      )
      .bind(after, limit)
      .all<{
        id: string;
        organization_id: string;
        secret: string;
        previous_secret: string | null;
        previous_secret_expires_at: string | null;
      }>()
  ).results;
  const writes: Array<{ kind: "sealed" | "resealed"; statement: D1PreparedStatement }> = [];
  const now = Date.now();
  for (const row of rows) {
    const read: StoredSecrets = {
      secret: row.secret,
      previousSecret: row.previous_secret,
      previousSecretExpiresAt: row.previous_secret_expires_at,
    };
    try {
      const resealed = await resealedSecrets(keys, read, webhookSecretAad(row.organization_id, row.id), now);
      if (resealed.previousUnreadable) {
        const error = `its replaced secret, which signs until ${row.previous_secret_expires_at}: ${resealed.previousUnreadable.message}`;
        report.unreadable.push({ organizationId: row.organization_id, webhookId: row.id, error });
      }
      if (resealed.changed) {
        writes.push({ kind: resealed.kind, statement: replaceStoredSecrets(d1, row.organization_id, row.id, read, resealed.next) });
      } else if (!resealed.previousUnreadable) report.alreadyCurrent++;
    } catch (err) {
      if (!(err instanceof SecretBoxError)) throw err;
      report.unreadable.push({ organizationId: row.organization_id, webhookId: row.id, error: err.message });
    }
  }
  for (let start = 0; start < writes.length; start += SEAL_BATCH_UPDATES) {
    const chunk = writes.slice(start, start + SEAL_BATCH_UPDATES);
    const results = await d1.batch(chunk.map((w) => w.statement));
    results.forEach((result, i) => {
      if (result.meta.changes === 0) report.alreadyCurrent++;
      else report[chunk[i]!.kind]++;
    });
  }
  // A full page may have more after it; a short one was the end of the table.
  if (rows.length === limit) report.next = rows[rows.length - 1]!.id;
  return report;
}
