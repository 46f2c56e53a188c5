/**
 * Readers that wait inside the DO for the run's log to change: a history page's long-poll, its
 * wait for a new run's first events, and its catch-up with the last events of a run whose
 * outcome came first. They used to poll from the Worker (a call into the home region every
 * 250 ms); here they wake when rows are appended (run-lifecycle.ts) and look again, or give up
 * at their deadline. Nothing is stored: a reset DO has no waiters, as it has no open requests.
 */
export class LogWaiters {
  private readonly waiting = new Set<() => void>();

  /** Resolves at the next append, or after `ms`, whichever comes first. */
  next(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.waiting.add(done);
    });
  }

  /** Rows were appended: every waiter looks again. */
  wake(): void {
    for (const done of [...this.waiting]) done();
  }
}
