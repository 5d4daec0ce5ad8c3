import type { Frame } from 'node-av/lib';

export interface RingEntry {
  frame: Frame;
  /** Wall-clock time the decoded frame became available, in ms since the epoch. */
  arrivedAt: number;
  /** Presentation timestamp in the stream's time base. */
  pts: bigint;
}

/**
 * The last `capacity` decoded frames, oldest first. The ring owns its frames
 * and frees each one when it is evicted or cleared, so callers that keep a
 * frame beyond the current tick must take their own reference (`clone()`).
 */
export class FrameRing {
  private readonly entries: RingEntry[] = [];

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`frame ring capacity must be a positive integer, got ${capacity}`);
    }
  }

  get size(): number {
    return this.entries.length;
  }

  /** Adds a frame, taking ownership of it, and frees the oldest frame when full. */
  push(frame: Frame, arrivedAt: number): void {
    this.entries.push({ frame, arrivedAt, pts: frame.pts });
    while (this.entries.length > this.capacity) {
      this.entries.shift()?.frame.free();
    }
  }

  /**
   * Returns the frame that was on screen at `atMs`: the newest one that
   * arrived at or before that time, or the oldest kept frame when every frame
   * is newer. Returns undefined when the ring is empty.
   */
  frameAt(atMs: number): RingEntry | undefined {
    for (let index = this.entries.length - 1; index >= 0; index -= 1) {
      const entry = this.entries[index];
      if (entry !== undefined && entry.arrivedAt <= atMs) return entry;
    }
    return this.entries[0];
  }

  /** Returns the kept frames that arrived from `fromMs` to `toMs` inclusive, oldest first. */
  between(fromMs: number, toMs: number): RingEntry[] {
    return this.entries.filter((entry) => entry.arrivedAt >= fromMs && entry.arrivedAt <= toMs);
  }

  newest(): RingEntry | undefined {
    return this.entries[this.entries.length - 1];
  }

  /** Frees every frame. */
  clear(): void {
    for (const entry of this.entries.splice(0)) {
      entry.frame.free();
    }
  }
}
