/** Start block: every MLLP frame begins with this byte. */
export const START_BLOCK = 0x0b;
/** End block, followed by a carriage return, ends a frame. */
export const END_BLOCK = 0x1c;
export const CARRIAGE_RETURN = 0x0d;

/** Bytes of an oversized frame kept for its MSH segment, so that the sender gets an AR naming its message. */
const OVERSIZE_HEAD_BYTES = 1_024;

/** Output of the framer for one completed frame. */
export type MllpFrame =
  /** A whole message, start and end blocks removed. */
  | { kind: 'message'; payload: Buffer }
  /** A frame longer than the limit: its contents were dropped except for the first bytes. */
  | { kind: 'oversize'; head: Buffer; bytes: number };

export interface MllpPushResult {
  frames: MllpFrame[];
  /** Bytes outside any frame that were discarded by this push. */
  discardedBytes: number;
  /** Bytes of frames dropped by this push because a start block came before their end block. */
  restartedFrameBytes: number[];
}

/**
 * Splits a TCP byte stream into MLLP frames: 0x0B, the message, 0x1C 0x0D.
 * A frame may arrive in any number of reads. Bytes outside a frame are
 * dropped and counted. A start block inside a frame (a control character
 * that HL7 text cannot contain) means the sender gave up on that frame and
 * began a new one. The unfinished frame is then dropped, so that it does not
 * swallow the next message. Memory per connection stays below `maxMessageBytes`
 * plus one byte: a longer frame is read to its end, and reported as
 * oversize with its first bytes, which hold the MSH segment.
 */
export class MllpFramer {
  private readonly maxMessageBytes: number;
  private parts: Buffer[] = [];
  private frameBytes = 0;
  private inFrame = false;
  /** The previous chunk ended with 0x1C inside a frame; a 0x0D must come next to end it. */
  private pendingEnd = false;

  constructor(options: { maxMessageBytes: number }) {
    this.maxMessageBytes = options.maxMessageBytes;
  }

  /** True while a frame has started and not yet ended. */
  get partial(): boolean {
    return this.inFrame;
  }

  push(chunk: Buffer): MllpPushResult {
    const frames: MllpFrame[] = [];
    const restartedFrameBytes: number[] = [];
    let discardedBytes = 0;
    let position = 0;
    while (position < chunk.length) {
      if (!this.inFrame) {
        const start = chunk.indexOf(START_BLOCK, position);
        if (start === -1) {
          discardedBytes += chunk.length - position;
          break;
        }
        discardedBytes += start - position;
        this.begin();
        position = start + 1;
        continue;
      }

      if (this.pendingEnd) {
        this.pendingEnd = false;
        if (chunk[position] === CARRIAGE_RETURN) {
          frames.push(this.finish());
          position += 1;
          continue;
        }
        // 0x1C not followed by 0x0D is data, as the standard leaves it.
        this.append(Buffer.from([END_BLOCK]));
      }

      const end = chunk.indexOf(END_BLOCK, position);
      const restart = chunk.indexOf(START_BLOCK, position);
      if (restart !== -1 && (end === -1 || restart < end)) {
        this.append(chunk.subarray(position, restart));
        restartedFrameBytes.push(this.frameBytes);
        this.begin();
        position = restart + 1;
        continue;
      }
      if (end === -1) {
        this.append(chunk.subarray(position));
        break;
      }
      this.append(chunk.subarray(position, end));
      position = end + 1;
      this.pendingEnd = true;
    }
    return { frames, discardedBytes, restartedFrameBytes };
  }

  /** Drops a frame that has started and not ended; returns its length in bytes. */
  reset(): number {
    const dropped = this.frameBytes;
    this.parts = [];
    this.frameBytes = 0;
    this.inFrame = false;
    this.pendingEnd = false;
    return dropped;
  }

  private begin(): void {
    this.parts = [];
    this.frameBytes = 0;
    this.inFrame = true;
    this.pendingEnd = false;
  }

  private append(bytes: Buffer): void {
    if (bytes.length === 0) return;
    // At most one byte past the limit is kept: enough to know the frame is too long.
    const kept = Math.max(0, Math.min(bytes.length, this.maxMessageBytes + 1 - this.frameBytes));
    // Copied, because the socket may reuse the chunk's memory.
    if (kept > 0) this.parts.push(Buffer.from(bytes.subarray(0, kept)));
    this.frameBytes += bytes.length;
  }

  private finish(): MllpFrame {
    const bytes = this.frameBytes;
    const payload = Buffer.concat(this.parts);
    this.parts = [];
    this.frameBytes = 0;
    this.inFrame = false;
    if (bytes > this.maxMessageBytes) return { kind: 'oversize', head: payload.subarray(0, OVERSIZE_HEAD_BYTES), bytes };
    return { kind: 'message', payload };
  }
}
