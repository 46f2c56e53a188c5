/**
 * The host's journal of run events that only it has: what activities publish (step attempts,
 * usage attributes, thinking and answer text). History events are not journaled: Temporal keeps
 * them, and the edge's watchdog has the host relay them again.
 *
 * Without it, such events live only in the EdgeClient's memory until the edge records them, so a
 * host that stops (crash, deploy) while the edge is unreachable, or an edge unreachable for longer
 * than a push's tries, loses them for good: a step whose end never shows, usage never charged.
 * With it, each publication is a row in a local SQLite file (node:sqlite) before it is handed to
 * the EdgeClient, and goes once the edge has recorded it. Rows still there are pushed again: at
 * start-up (what the previous process left) and every REDELIVER_INTERVAL_MS (what a push gave up
 * on; that run's later rows wait in the file behind it, in order, and other runs' rows go at
 * once). The edge drops what it already has by source key, so a row pushed twice is recorded once.
 *
 * WAL with `synchronous = NORMAL`: a row survives the process being killed, not the machine losing
 * power. A row the edge has not taken after JOURNAL_MAX_AGE_MS is dropped with an ERROR line
 * naming its run (a push refused for that long will not be taken).
 *
 * Memory stays bounded however long the edge is away: at most MAX_ROWS_IN_FLIGHT rows (and
 * MAX_BYTES_IN_FLIGHT of them) are with the EdgeClient at a time. Past that (an outage while
 * models stream their text, a row every 150 ms each), new rows wait in the file, and are handed
 * over in the order they came as earlier ones are taken (each push taken makes room at once). A
 * redelivery reads the file row by row, never all of it at once (a process that starts after a
 * long outage does not load the whole backlog). A publisher's promise settles as its row's push
 * does, whenever that is.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { RunEvent } from "../src/shared/host-api.ts";
import type { EdgeClient } from "./edge-client.ts";

/** How often rows that a push gave up on are pushed again. */
export const REDELIVER_INTERVAL_MS = 60_000;
/** A row older than this is given up, loudly. */
export const JOURNAL_MAX_AGE_MS = 7 * 24 * 60 * 60_000;
/** Rows handed to the EdgeClient (and so held in memory) at once, at most. */
export const MAX_ROWS_IN_FLIGHT = 2_000;
/** The same bound in bytes of their JSON (a step's end may carry MiBs of outputs). */
export const MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;

/** Where activities publish run events: the EdgeClient itself, or the journal in front of it. */
export type RunEventSink = Pick<EdgeClient, "pushRunEvents">;

interface JournalRow extends Record<string, unknown> {
  id: number;
  workflow_id: string;
  events: string;
  added_at: number;
}

export class RunEventJournal implements RunEventSink {
  private readonly db: DatabaseSync;
  private readonly insert: StatementSync;
  private readonly remove: StatementSync;
  /** Rows with a push under way in this process (not pushed again meanwhile), and their size. */
  private readonly inFlight = new Map<number, number>();
  private inFlightBytes = 0;
  /**
   * Rows wait in the file for room among those in flight (or were left by an earlier process and
   * not handed over yet): new rows of every run queue behind them, so that they are handed over in
   * the order they came. Cleared by a redelivery that hands over every row.
   */
  private backlog: boolean;
  /**
   * Runs with a row in the file whose push was given up: their new rows queue behind it, so that a
   * run's events reach the EdgeClient in the order they were published (its rows already with the
   * EdgeClient behind the given-up one are given up with it, and wait here too). Other runs' rows go at
   * once: a run the edge refuses (or cannot take) holds up no other run until the next redelivery.
   * Cleared by a redelivery that hands over every row.
   */
  private readonly held = new Set<string>();
  /** Publishers of rows this process queued in the file: settled as those rows' pushes are. */
  private readonly waiting = new Map<number, { resolve: () => void; reject: (err: unknown) => void }>();
  /** A redelivery is due as soon as the current work is done (a push was taken, making room). */
  private refillDue = false;
  private timer: ReturnType<typeof setInterval> | undefined;

  /** `path`: the SQLite file, created with its directory. */
  constructor(
    path: string,
    private readonly edge: RunEventSink,
    private readonly log: (msg: string) => void = (msg) => console.warn(msg),
    private readonly bounds = { rows: MAX_ROWS_IN_FLIGHT, bytes: MAX_BYTES_IN_FLIGHT },
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new DatabaseSync(path);
    this.db.exec(`PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS run_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workflow_id TEXT NOT NULL,
        events TEXT NOT NULL,
        added_at INTEGER NOT NULL
      )`);
    this.insert = this.db.prepare("INSERT INTO run_events (workflow_id, events, added_at) VALUES (?, ?, ?) RETURNING id");
    this.remove = this.db.prepare("DELETE FROM run_events WHERE id = ?");
    this.backlog = this.db.prepare("SELECT 1 FROM run_events LIMIT 1").get() !== undefined;
  }

  /**
   * Journals the events, then hands them to the EdgeClient; resolves as its push does. With the
   * bound of rows in flight taken, rows waiting in the file for room, or a row of the same run
   * given up, the row waits there too, and a redelivery hands it over in its turn: this still
   * resolves as that push does.
   */
  pushRunEvents(workflowId: string, events: RunEvent[], options: { now?: boolean } = {}): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    const json = JSON.stringify(events);
    const { id } = this.insert.get(workflowId, json, Date.now()) as { id: number };
    if (this.backlog || this.held.has(workflowId) || !this.hasRoomFor(json.length)) {
      if (!this.held.has(workflowId)) this.backlog = true;
      return new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    }
    return this.deliver(id, workflowId, events, json.length, options);
  }

  /** Rows waiting for the edge (a push under way, given up, or left by an earlier process). */
  size(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM run_events").get() as { n: number }).n;
  }

  /**
   * Pushes the rows that have no push under way, oldest first, as many as the bounds of rows in
   * flight leave room for: what an earlier process left, what a push gave up on, what waited in
   * the file. Reads the file row by row. Returns how many rows it pushed.
   */
  redeliver(): number {
    const rows = this.db.prepare("SELECT id, workflow_id, events, added_at FROM run_events ORDER BY id").iterate() as Iterable<JournalRow>;
    let pushed = 0;
    let full = false;
    for (const row of rows) {
      if (this.inFlight.has(row.id)) continue;
      if (Date.now() - row.added_at > JOURNAL_MAX_AGE_MS) {
        this.remove.run(row.id);
        this.waiting.get(row.id)?.reject(new Error("given up after JOURNAL_MAX_AGE_MS"));
        this.waiting.delete(row.id);
        this.log(
          `outrider host: ERROR gave up run events of ${row.workflow_id} journaled ${new Date(row.added_at).toISOString()}: the edge has not taken them in ${JOURNAL_MAX_AGE_MS / 86_400_000} days`,
        );
        continue;
      }
      if (!this.hasRoomFor(row.events.length)) {
        full = true;
        break;
      }
      pushed++;
      this.deliver(row.id, row.workflow_id, JSON.parse(row.events) as RunEvent[], row.events.length, {}).catch(() => undefined);
    }
    this.backlog = full;
    // Every row is with the EdgeClient now: a given-up one is ahead of its run's later rows there.
    if (!full) this.held.clear();
    return pushed;
  }

  /** Pushes what is left now, then again every REDELIVER_INTERVAL_MS. */
  start(intervalMs = REDELIVER_INTERVAL_MS): number {
    const pushed = this.redeliver();
    this.timer ??= setInterval(() => this.redeliver(), intervalMs);
    this.timer.unref();
    return pushed;
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    if (this.db.isOpen) this.db.close();
  }

  /** Room for a row of `bytes` among those in flight (one row always fits when none is). */
  private hasRoomFor(bytes: number): boolean {
    if (this.inFlight.size === 0) return true;
    return this.inFlight.size < this.bounds.rows && this.inFlightBytes + bytes <= this.bounds.bytes;
  }

  /**
   * One push of a row; the row goes once the edge has it, and stays (for `redeliver`) if the push
   * is given up. A push taken while rows wait in the file makes room: the next ones go at once,
   * not at the next interval (a given-up push does not: the edge is away, and the interval paces
   * the next tries).
   */
  private deliver(id: number, workflowId: string, events: RunEvent[], bytes: number, options: { now?: boolean }): Promise<void> {
    this.inFlight.set(id, bytes);
    this.inFlightBytes += bytes;
    const waiter = this.waiting.get(id);
    this.waiting.delete(id);
    const pushed = this.edge
      .pushRunEvents(workflowId, events, options)
      .then(
        () => {
          if (this.db.isOpen) this.remove.run(id);
          if (this.backlog) this.refillSoon();
        },
        (err: unknown) => {
          // Given up: the row waits in the file for a redelivery, and its run's later rows queue behind it.
          this.held.add(workflowId);
          throw err;
        },
      )
      .finally(() => {
        this.inFlight.delete(id);
        this.inFlightBytes -= bytes;
      });
    if (waiter) pushed.then(waiter.resolve, waiter.reject);
    return pushed;
  }

  private refillSoon(): void {
    if (this.refillDue) return;
    this.refillDue = true;
    setImmediate(() => {
      this.refillDue = false;
      if (this.db.isOpen) this.redeliver();
    });
  }
}
