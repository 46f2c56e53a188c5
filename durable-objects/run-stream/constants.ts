/** Named intervals, limits and storage keys of the RunStream DO (one place to read them). */

/** Version of the DO's own SQLite schema (storage.ts migrates older storage up to it). */
export const STORAGE_SCHEMA_VERSION = 7;
/** Expired push nonces are deleted at most this often (a replay is refused by the nonce's key either way). */
export const NONCE_CLEANUP_INTERVAL_MS = 60_000;

/** A run with no new event for this long is checked against Temporal (overridable: RUN_WATCHDOG_QUIET_MS). */
export const DEFAULT_WATCHDOG_QUIET_MS = 30_000;
/** The longest the watchdog waits between checks of a run that stays quiet. */
export const MAX_WATCHDOG_INTERVAL_MS = 10 * 60_000;
/** Each quiet check doubles the wait, at most this many times (then MAX_WATCHDOG_INTERVAL_MS caps it). */
export const MAX_WATCHDOG_DOUBLINGS = 16;
/**
 * How often the watchdog checks a run that Temporal no longer has while the log has no outcome for
 * it (watchdog.ts `lostOpenRun`): nothing true can be recorded, and a check every
 * MAX_WATCHDOG_INTERVAL_MS for ever would only repeat the 404; an operator restoring Temporal's
 * data is still seen within this.
 */
export const LOST_RUN_CHECK_INTERVAL_MS = 6 * 60 * 60_000;

/** Most history events sent in one `history` message when replaying a backlog. */
export const REPLAY_BATCH_SIZE = 200;
/**
 * Most payload bytes (as JSON) in one `history` message for a stream that asked for payloads: a
 * history's events may each carry up to Temporal's 2 MiB, and one message (one SSE frame) of a
 * whole backlog would be more than the Worker lets a stream hold unread (src/sse/writer.ts).
 */
export const REPLAY_BATCH_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;
/**
 * Most JSON (in characters) of the events on one history page (`GET /workflow/:id/history`): 1000
 * events with payloads of up to 2 MiB each would be more than the DO or the Worker can hold. A
 * page that reaches it ends early, with a `nextPageToken`; one event larger than this is a page of its own.
 */
export const HISTORY_PAGE_MAX_CHARS = 4 * 1024 * 1024;
/**
 * Most stored JSON (in UTF-8 bytes) a subscription reads of its backlog when it connects. A run's
 * log holds its Temporal history (up to Temporal's 50 MB limit, events of up to 2 MiB each) and its
 * step outputs and thinking text; parsed whole, once for each subscriber connecting at that moment,
 * it is more than a DO's 128 MB. A part ends before the row that would take it past this (a row
 * larger than this is a part of its own); the DO sends it and closes with STREAM_MORE_CLOSE_CODE,
 * and the Worker subscribes again from the last cursor it sent once its client has read most of it
 * (src/sse/run-subscription.ts), so a client never has more than about twice this unread.
 */
export const BACKLOG_PART_MAX_BYTES = 4 * 1024 * 1024;
/**
 * Open streams one run takes (overridable: RUN_STREAM_MAX_SUBSCRIBERS). Every message is sent to
 * each subscriber from the run's one DO, so without a bound one caller could open enough streams to
 * slow every other subscriber of the run; Cloudflare allows 32,768 hibernatable sockets per DO.
 */
export const DEFAULT_MAX_SUBSCRIBERS_PER_RUN = 10_000;
/**
 * Runs one organization may have open (not ended) at once (overridable:
 * MAX_OPEN_RUNS_PER_ORGANIZATION); the next start is 429 too_many_open_runs. Every open run costs
 * the host a history long poll and its DO an alarm, so without a bound one tenant's runs waiting
 * for ever (an `approval` nobody approves) would slow every other tenant's.
 */
export const DEFAULT_MAX_OPEN_RUNS_PER_ORGANIZATION = 1_000;
/** Seconds a stream refused for a full run suggests waiting (streams of a run end and free places). */
export const FULL_RUN_RETRY_AFTER_SECONDS = 5;
/** Close code the DO uses to tell the Worker the stream is complete (after `done`). */
export const STREAM_DONE_CLOSE_CODE = 4000;
/** Close code the DO uses after a part of a long backlog (BACKLOG_PART_MAX_BYTES): subscribe again from the last cursor for the rest. */
export const STREAM_MORE_CLOSE_CODE = 4001;

/** Keys of the `meta` table. */
export const META_KEYS = {
  schemaVersion: "schemaVersion",
  workflowId: "workflowId",
  /** Watchdog checks in a row that found the run quiet. */
  quietChecks: "quietChecks",
  /** "1" while the D1 row says the run waits for a signal or human input; "?" after a statement that cleared it (waiting.ts). */
  waiting: "waiting",
  /** `trace:<runId>`: the R2 key of that run's trace, once written. */
  trace: (runId: string) => `trace:${runId}`,
  /**
   * The log's entries (their seq) through which every run that ended has its trace: a wake looks
   * for runs without one only after it (traces.ts), not over every run the workflow ever had.
   */
  tracesThrough: "tracesThrough",
  /**
   * `historyNeverCloses:<runId>`: when the watchdog found that Temporal no longer has the workflow
   * while the log held that run's outcome but not its closing history event; the run counts as
   * complete with the history the log has (EventLog.isComplete, run-lifecycle.ts).
   */
  historyNeverCloses: (runId: string) => `historyNeverCloses:${runId}`,
  /**
   * The run (its id, or "none") that Temporal no longer had while the log had no outcome for it:
   * logged once, then checked every LOST_RUN_CHECK_INTERVAL_MS (watchdog.ts); "" once the host
   * answers for it again or its events arrive.
   */
  lostOpenRun: "lostOpenRun",
} as const;

/**
 * Log entry types the `log` view never sends: Temporal's history is the history view's, no route
 * over the log view shows it, and its events can carry payloads of up to 2 MiB each, which every
 * viewer of the run would otherwise be sent, to drop.
 */
export const LOG_VIEW_SKIPPED_TYPE = "history";

/**
 * The source keys of the DO's own `run.waiting` entries (waiting.ts): `waiting:<runId>:<n>`, `n`
 * the run's history events logged when its waiting flipped, so a flip found again (a redelivered
 * batch, a DO that restarted) has the same key and the log keeps it once. The host's keys never
 * begin so (`history:`, `step:`, `run:`, …).
 */
export const waitingSourceKeyPrefix = (runId: string) => `waiting:${runId}:`;

/** Event types that change the run's D1 row; the others only live in the log. */
export const PROJECTED_TYPES: ReadonlySet<string> = new Set(["run.started", "run.finished", "attribute", "step"]);

/** `events.projected`: not yet in D1 / in D1 / outcome in D1 but the credit settlement still to do. */
export const PROJECTION_STATE = { pending: 0, done: 1, settlementPending: 2 } as const;
/**
 * Most JSON (in characters) of the rows D1 lacks that the log keeps whole in memory (event-log.ts):
 * the rows of a push are projected from memory, with no read back. Past it, a row is kept only by
 * its seq, type, run and state, and the projection reads it back in its batch: a long D1 outage
 * under a wide run (step outputs of up to ~2 MiB each) would otherwise fill the DO's 128 MB, and
 * every wake would read it all in again.
 */
export const UNPROJECTED_KEPT_MAX_CHARS = 8 * 1024 * 1024;
/**
 * Runs' outcomes the log keeps in memory once read or appended, the most recently used (event-log.ts):
 * the latest run's is asked on every push, an earlier run's only by a read of that run. A wake reads
 * none: a workflow that continued as new thousands of times (or was reset as often) keeps every
 * run's outcome in its one DO, each up to a run's whole output or error, and they are read back one
 * at a time, when asked for.
 */
export const OUTCOMES_KEPT = 4;

/** One host start attempt may take this long before the run is left to the outbox. */
export const START_ATTEMPT_TIMEOUT_MS = 5_000;
/**
 * A blocking start that waits through the outbox (`awaitStart`) looks at the outbox at least this
 * often: a confirmation wakes it at once (it appends `run.started`), a refusal after acceptance
 * (the row ends `failed` in D1, nothing appended) is seen on the next look.
 */
export const START_AWAIT_POLL_MS = 500;

/** WebSocket close codes the DO answers with (RFC 6455 §7.4.1). 1005 means "no code was given"; it is never sent. */
export const NORMAL_CLOSURE_CODE = 1000;
export const NO_STATUS_CLOSE_CODE = 1005;
/** The DO's side of a subscriber socket that failed. */
export const SUBSCRIBER_ERROR_CLOSE_CODE = 1011;

/** Step outputs kept in the log (over 768 KiB each, up to ~2 MiB) that one detail read answers; the rest are `omitted`. */
export const MAX_LOGGED_STEP_OUTPUTS_PER_READ = 4;
