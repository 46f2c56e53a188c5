/**
 * StreamLeases: the open streams of one API key, as leases in its RateLimiter's storage. A Worker
 * takes a lease when it opens a stream, renews it while the stream lasts and gives it back when
 * the stream ends; a lease that is not renewed (its Worker went away without a word) expires, so a
 * lost release costs a place for at most STREAM_LEASE_TTL_MS. The count is exact under any
 * concurrency for the same reason the rate limit's is: the object decides with no await.
 */

/** How long a lease holds a place without being renewed. */
export const STREAM_LEASE_TTL_MS = 180_000;
/** How often a Worker renews the lease of a stream it holds: a third of the lease, so one lost renewal costs nothing. */
export const STREAM_LEASE_RENEW_MS = STREAM_LEASE_TTL_MS / 3;

const LEASE_KEY_PREFIX = "stream-lease:";

export interface StreamLeaseDecision {
  allowed: boolean;
  /** Leases held after the decision (this one included when allowed). */
  open: number;
  max: number;
}

export class StreamLeases {
  /** Lease id → expiry (ms), read from storage on first use after a wake. */
  private expiries: Map<string, number> | undefined;

  constructor(private readonly kv: SyncKvStorage) {}

  /**
   * Takes a place for a stream, unless `max` are held (expired leases do not count). `capped: false`
   * takes one whatever the count: a stream whose run its own request has just started (a streaming
   * start), which must not be refused after the fact and is bounded by the open runs already.
   */
  open(leaseId: string, max: number, capped: boolean, now: number): StreamLeaseDecision {
    const leases = this.leases();
    if (capped && !leases.has(leaseId) && leases.size >= max) {
      this.sweep(now);
      if (leases.size >= max) return { allowed: false, open: leases.size, max };
    }
    this.hold(leaseId, now);
    return { allowed: true, open: leases.size, max };
  }

  /** Keeps a lease for another STREAM_LEASE_TTL_MS; one that expired meanwhile is taken again (its stream is open). */
  renew(leaseId: string, now: number): void {
    this.hold(leaseId, now);
  }

  close(leaseId: string): void {
    this.leases().delete(leaseId);
    this.kv.delete(LEASE_KEY_PREFIX + leaseId);
  }

  /** Drops the leases whose time is up. */
  sweep(now: number): void {
    const leases = this.leases();
    for (const [leaseId, expiresAt] of leases) if (expiresAt <= now) this.close(leaseId);
  }

  /** When the next lease expires, or null when none is held. */
  nextExpiry(): number | null {
    let next: number | null = null;
    for (const expiresAt of this.leases().values()) if (next === null || expiresAt < next) next = expiresAt;
    return next;
  }

  private hold(leaseId: string, now: number): void {
    const expiresAt = now + STREAM_LEASE_TTL_MS;
    this.leases().set(leaseId, expiresAt);
    this.kv.put(LEASE_KEY_PREFIX + leaseId, expiresAt);
  }

  private leases(): Map<string, number> {
    if (!this.expiries) {
      this.expiries = new Map();
      for (const [key, expiresAt] of this.kv.list<number>({ prefix: LEASE_KEY_PREFIX }))
        this.expiries.set(key.slice(LEASE_KEY_PREFIX.length), expiresAt);
    }
    return this.expiries;
  }
}
