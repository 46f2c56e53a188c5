/**
 * How long a step that waits on the outside world (a model, a web page) may go without a heartbeat
 * before Temporal takes its attempt as lost and retries it, on whichever host is up. Such a step
 * heartbeats every second while it waits (`heartbeating`, host/activities/runtime.ts; the worker
 * passes a heartbeat on at most every 3 s), so only an attempt whose host died or hangs misses it.
 * Without it, an attempt on a host killed mid-call was retried only once its 5-minute
 * startToCloseTimeout ran out. Well above the longest time such a step spends without
 * heartbeating: the wait for its events to reach the edge at its end (DELIVERY_WAIT_MS, 10 s).
 */
export const OUTSIDE_CALL_HEARTBEAT_TIMEOUT = "30 seconds";
