/** Connections within `windowMs` at or above which the link counts as flapping. */
export const FLAPPING_CONNECTS = 4;
/** 10 minutes: long enough to catch a broker that drops the box every minute or two. */
export const FLAPPING_WINDOW_MS = 10 * 60_000;

/**
 * Counts broker connections in a sliding window. A box whose connection
 * keeps dropping and coming back (a client id used twice, a broker that
 * kills idle links, a bad network) is flapping.
 */
export class ConnectionHistory {
  private connects: number[] = [];
  private total = 0;
  private readonly windowMs: number;
  private readonly threshold: number;
  private readonly now: () => number;

  constructor(options: { windowMs?: number; threshold?: number; now?: () => number } = {}) {
    this.windowMs = options.windowMs ?? FLAPPING_WINDOW_MS;
    this.threshold = options.threshold ?? FLAPPING_CONNECTS;
    this.now = options.now ?? Date.now;
  }

  recordConnect(): void {
    this.total += 1;
    this.connects.push(this.now());
    this.prune();
  }

  /** Connections since start. */
  get connectCount(): number {
    return this.total;
  }

  /** Connections in the window, the current one included. */
  get recentConnects(): number {
    this.prune();
    return this.connects.length;
  }

  get flapping(): boolean {
    return this.recentConnects >= this.threshold;
  }

  private prune(): void {
    const oldest = this.now() - this.windowMs;
    while (this.connects.length > 0 && (this.connects[0] ?? 0) < oldest) this.connects.shift();
  }
}
