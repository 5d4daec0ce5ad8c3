/**
 * Counter of repeated events that decides when the next log line is due, so
 * that a flood (garbage bytes, a missing port) logs at most once per interval
 * with a count instead of once per event.
 */
export class LogThrottle {
  private readonly intervalMs: number;
  private readonly clock: () => number;
  private pending = 0;
  private lastLoggedAt: number | undefined;

  constructor(intervalMs: number, clock: () => number) {
    this.intervalMs = intervalMs;
    this.clock = clock;
  }

  /**
   * Adds `count` events. Returns the number of events since the previous log
   * line, this call's included, when a line is due now; otherwise undefined.
   */
  add(count = 1): number | undefined {
    this.pending += count;
    const now = this.clock();
    if (this.lastLoggedAt !== undefined && now - this.lastLoggedAt < this.intervalMs) return undefined;
    this.lastLoggedAt = now;
    const total = this.pending;
    this.pending = 0;
    return total;
  }
}
