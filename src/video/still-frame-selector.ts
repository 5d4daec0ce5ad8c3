import type { Frame } from 'node-av/lib';
import { sleep } from '../backoff.js';
import { EndocapError, ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import type { FocusMeter } from './focus.js';
import type { FrameRing, RingEntry } from './frame-ring.js';

export interface SelectedFrame {
  /** Our own reference, which the caller frees. */
  frame: Frame;
  /** Wall-clock arrival time of the frame, in ms since the epoch. */
  arrivedAt: number;
}

/**
 * Picks the frame for a still from the frame ring: the one on screen at the
 * press, or the sharpest one in a window around it. Returns a reference of
 * its own, so that the ring may free its copy while the still is encoded.
 */
export class StillFrameSelector {
  private readonly ring: FrameRing;
  private readonly focusMeter: FocusMeter;
  private readonly log: Logger;

  constructor(options: { ring: FrameRing; focusMeter: FocusMeter; log: Logger }) {
    this.ring = options.ring;
    this.focusMeter = options.focusMeter;
    this.log = options.log;
  }

  /** Returns the frame that was on screen at `atMs`. Throws VIDEO_NO_FRAME when none is kept. */
  onScreen(atMs: number): SelectedFrame {
    return this.referenceFrame(this.ring.frameAt(atMs));
  }

  private referenceFrame(entry: RingEntry | undefined): SelectedFrame {
    if (entry === undefined) {
      throw new EndocapError(ErrorCodes.VIDEO_NO_FRAME, 'no video frame available for a still', { retryable: true });
    }
    const frame = entry.frame.clone();
    if (frame === null) {
      throw new EndocapError(ErrorCodes.STILL_ENCODE_FAILED, 'could not reference the video frame (out of memory)', { retryable: true });
    }
    return { frame, arrivedAt: entry.arrivedAt };
  }

  /** Waits for the end of the window around `atMs`, then returns the kept frame in it with the highest focus measure. */
  async sharpest(atMs: number, windowMs: number): Promise<SelectedFrame> {
    const half = windowMs / 2;
    const waitMs = atMs + half - Date.now();
    if (waitMs > 0) await sleep(Math.min(waitMs, windowMs));
    const entries = this.ring.between(atMs - half, atMs + half);
    if (entries.length === 0) return this.onScreen(atMs);

    const candidates: SelectedFrame[] = [];
    try {
      for (const entry of entries) candidates.push(this.referenceFrame(entry));
    } catch (error) {
      for (const candidate of candidates) candidate.frame.free();
      throw error;
    }
    let best = candidates[0];
    let bestScore = -1;
    try {
      for (const candidate of candidates) {
        const score = await this.focusMeter.measure(candidate.frame);
        if (score > bestScore) {
          best = candidate;
          bestScore = score;
        }
      }
    } catch (error) {
      for (const candidate of candidates) candidate.frame.free();
      throw error;
    }
    for (const candidate of candidates) {
      if (candidate !== best) candidate.frame.free();
    }
    if (best === undefined) return this.onScreen(atMs);
    this.log.debug({ candidates: candidates.length, offsetMs: best.arrivedAt - atMs, focus: Math.round(bestScore) }, 'sharpest frame chosen');
    return best;
  }
}
