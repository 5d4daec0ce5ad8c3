/**
 * Exponential backoff with full jitter and a cap, shared by every reconnect
 * and retry loop (PACS senders, serial port, video source, MQTT).
 */
export interface BackoffOptions {
  /** Delay before the first retry, in milliseconds. */
  initialMs: number;
  /** Upper bound for any single delay, in milliseconds. */
  maxMs: number;
  /** Growth factor per failed attempt. */
  multiplier?: number;
  /** Fraction of the delay that is randomised, 0 to 1. */
  jitter?: number;
  /** Source of randomness in [0, 1); tests pass a fixed one. */
  random?: () => number;
}

export class Backoff {
  private attempts = 0;
  private readonly options: Required<BackoffOptions>;

  constructor(options: BackoffOptions) {
    this.options = { multiplier: 2, jitter: 0.5, random: Math.random, ...options };
  }

  /** Number of failures since the last reset. */
  get failures(): number {
    return this.attempts;
  }

  /** Records a failure and returns how long to wait before the next try. */
  next(): number {
    const { initialMs, maxMs, multiplier, jitter, random } = this.options;
    const base = Math.min(maxMs, initialMs * multiplier ** this.attempts);
    this.attempts += 1;
    const spread = base * jitter;
    return Math.round(base - spread + spread * random());
  }

  /** Clears the failure count after a success. */
  reset(): void {
    this.attempts = 0;
  }
}

/** Resolves after `ms`, or early when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
