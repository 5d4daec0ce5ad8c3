/** One H.264 access unit of the pre-record stream, in decoding order. */
export interface EncodedPacket {
  /** Annex B bytes, owned by this entry. */
  data: Buffer;
  /** Presentation and decoding times, in the stream's time base. */
  pts: bigint;
  dts: bigint;
  /** True when decoding can start here, because the access unit contains an IDR picture. */
  keyFrame: boolean;
  /** Wall-clock arrival of the source frame, in ms since the epoch. */
  arrivedAt: number;
}

export interface PacketRingOptions {
  /** Time kept before the newest packet, in ms. */
  keepMs: number;
  /** Limit of the packet bytes kept. */
  maxBytes: number;
}

export interface PacketRingStatus {
  packets: number;
  bytes: number;
  /** Time from the oldest to the newest packet kept, in ms. */
  spanMs: number;
  /** Groups of pictures dropped early to stay under maxBytes. */
  groupsDroppedForSize: number;
}

/**
 * The last seconds of an encoded stream, for the pre-record of clips. It
 * always starts with a key frame and is trimmed a whole group of pictures at a
 * time: the oldest group goes once the next key frame alone still covers
 * `keepMs` before the newest packet, or when the bytes exceed `maxBytes` (the
 * newest group always stays). So a clip can start at a key frame no more than
 * one key-frame interval before any point in the last `keepMs`.
 */
export class PacketRing {
  private readonly options: PacketRingOptions;
  private packets: EncodedPacket[] = [];
  private totalBytes = 0;
  private droppedForSize = 0;

  constructor(options: PacketRingOptions) {
    this.options = options;
  }

  /** Appends a packet. Packets before the first key frame are dropped, since nothing can decode them. */
  push(packet: EncodedPacket): void {
    if (this.packets.length === 0 && !packet.keyFrame) return;
    this.packets.push(packet);
    this.totalBytes += packet.data.length;
    this.trim(packet.arrivedAt);
  }

  /**
   * Returns the packets from the latest key frame that arrived at or before
   * `atMs` to the newest, or from the oldest key frame when every one is newer.
   * The array is a copy; the packets are shared and must not be changed.
   */
  from(atMs: number): EncodedPacket[] {
    let start = -1;
    for (let index = 0; index < this.packets.length; index += 1) {
      const packet = this.packets[index];
      if (packet === undefined || !packet.keyFrame) continue;
      if (packet.arrivedAt > atMs && start >= 0) break;
      start = index;
      if (packet.arrivedAt > atMs) break;
    }
    return start < 0 ? [] : this.packets.slice(start);
  }

  clear(): void {
    this.packets = [];
    this.totalBytes = 0;
  }

  status(): PacketRingStatus {
    const first = this.packets[0];
    const last = this.packets[this.packets.length - 1];
    return {
      packets: this.packets.length,
      bytes: this.totalBytes,
      spanMs: first !== undefined && last !== undefined ? last.arrivedAt - first.arrivedAt : 0,
      groupsDroppedForSize: this.droppedForSize,
    };
  }

  private trim(newestAt: number): void {
    const cutoff = newestAt - this.options.keepMs;
    for (;;) {
      const next = this.nextKeyFrameIndex();
      if (next < 0) return;
      const nextKey = this.packets[next];
      const coveredWithout = nextKey !== undefined && nextKey.arrivedAt <= cutoff;
      const tooLarge = this.totalBytes > this.options.maxBytes;
      if (!coveredWithout && !tooLarge) return;
      if (!coveredWithout) this.droppedForSize += 1;
      this.dropBefore(next);
    }
  }

  /** Index of the second key frame, where the oldest group of pictures ends; -1 when there is only one group. */
  private nextKeyFrameIndex(): number {
    for (let index = 1; index < this.packets.length; index += 1) {
      if (this.packets[index]?.keyFrame === true) return index;
    }
    return -1;
  }

  private dropBefore(index: number): void {
    for (const packet of this.packets.splice(0, index)) this.totalBytes -= packet.data.length;
  }
}
