import './polyfill.js';
import type { Frame } from 'node-av/lib';
import { AV_NOPTS_VALUE } from 'node-av/constants';
import { sleep } from '../backoff.js';

/**
 * Holds frames of a file back to its own frame rate, measured from the first
 * frame of the pass. A timestamp jump longer than `maxDelayMs` restarts the
 * clock instead of stalling past the signal timeout.
 */
export class Pacer {
  private originPts: bigint | undefined;
  private originMs = 0;

  constructor(private readonly maxDelayMs: number) {}

  /** Resolves when `frame` is due, or at once when it is late or the abort signal fires. */
  async wait(frame: Frame, abort: AbortSignal): Promise<void> {
    const timeBase = frame.timeBase;
    if (timeBase.den === 0 || frame.pts === AV_NOPTS_VALUE) return;
    if (this.originPts === undefined) {
      this.originPts = frame.pts;
      this.originMs = Date.now();
      return;
    }
    const offsetMs = (Number(frame.pts - this.originPts) * timeBase.num * 1000) / timeBase.den;
    const delayMs = this.originMs + offsetMs - Date.now();
    if (delayMs > this.maxDelayMs || offsetMs < 0) {
      this.originPts = frame.pts;
      this.originMs = Date.now();
      return;
    }
    if (delayMs > 1) await sleep(delayMs, abort);
  }
}
