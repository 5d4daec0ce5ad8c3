import './polyfill.js';
import { rm } from 'node:fs/promises';
import { AV_CODEC_ID_H264, AV_PKT_FLAG_KEY, AVMEDIA_TYPE_VIDEO } from 'node-av/constants';
import { avRescaleQ, FFmpegError, FormatContext, Packet, Rational, type Stream } from 'node-av/lib';
import { EndocapError, ErrorCodes } from '../errors.js';
import type { ClipStream } from './clip-stream.js';
import type { EncodedPacket } from './packet-ring.js';

/** Clock of MPEG-TS timestamps (ISO/IEC 13818-1): 90 kHz. */
const MPEG_TS_TIME_BASE = new Rational(1, 90_000);

/** A closed clip file and what the DICOM object needs to know about it. */
export interface ClipFile {
  path: string;
  stream: ClipStream;
  /** Access units written, one per frame. */
  frames: number;
  /** Size of the H.264 packets written, before the MPEG-TS overhead. */
  packetBytes: number;
  /** Wall-clock arrival of the first and last frame, in ms since the epoch. */
  firstArrivedAt: number;
  lastArrivedAt: number;
}

/**
 * Writes one clip as an MPEG-TS file: PS3.5 8.2.7 and 8.2.8 require the H.264
 * stream in an MPEG-TS or MP4 container, and MPEG-TS can be written as packets
 * arrive. Timestamps are rebased to start at zero and kept increasing, so that
 * a source that starts over (a looping file) still gives a playable clip.
 * Writes run one after another on libuv threads. Throws CLIP_WRITE_FAILED.
 */
export class ClipWriter {
  private readonly path: string;
  private readonly stream: ClipStream;
  private readonly context: FormatContext;
  private readonly output: Stream;
  private readonly timeBase: Rational;
  /** One frame in the 90 kHz clock. */
  private readonly frameDuration: bigint;
  private frames = 0;
  private packetBytes = 0;
  private firstArrivedAt: number | undefined;
  private lastArrivedAt = 0;
  private offset: bigint | undefined;
  private lastDts = -1n;
  private closed = false;
  private opened = false;

  private constructor(path: string, stream: ClipStream, context: FormatContext, output: Stream) {
    this.path = path;
    this.stream = stream;
    this.context = context;
    this.output = output;
    this.timeBase = new Rational(stream.timeBase.num, stream.timeBase.den);
    this.frameDuration = BigInt(Math.round(90_000 / (stream.frameRate > 0 ? stream.frameRate : 30)));
  }

  static async open(path: string, stream: ClipStream): Promise<ClipWriter> {
    const context = new FormatContext();
    check(context.allocOutputContext2(null, 'mpegts', path), 'creating the MPEG-TS muxer');
    const output = context.newStream(null);
    output.codecpar.codecType = AVMEDIA_TYPE_VIDEO;
    output.codecpar.codecId = AV_CODEC_ID_H264;
    output.codecpar.width = stream.width;
    output.codecpar.height = stream.height;
    output.timeBase = MPEG_TS_TIME_BASE;
    output.avgFrameRate = new Rational(Math.round(stream.frameRate * 1000), 1000);
    const writer = new ClipWriter(path, stream, context, output);
    try {
      check(await context.openOutput(), 'opening the clip file');
      writer.opened = true;
      check(await context.writeHeader(null), 'writing the MPEG-TS header');
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return writer;
  }

  /** Appends packets in decoding order. */
  async write(packets: readonly EncodedPacket[]): Promise<void> {
    for (const entry of packets) {
      const packet = new Packet();
      packet.alloc();
      try {
        const { pts, dts } = this.rebase(entry);
        packet.data = entry.data;
        packet.pts = avRescaleQ(pts, this.timeBase, this.output.timeBase);
        packet.dts = avRescaleQ(dts, this.timeBase, this.output.timeBase);
        packet.duration = this.frameDuration;
        packet.streamIndex = this.output.index;
        if (entry.keyFrame) packet.flags = AV_PKT_FLAG_KEY;
        check(await this.context.writeFrame(packet), 'writing to the clip file');
      } finally {
        packet.free();
      }
      this.frames += 1;
      this.packetBytes += entry.data.length;
      this.firstArrivedAt ??= entry.arrivedAt;
      this.lastArrivedAt = entry.arrivedAt;
    }
  }

  /** Finishes the file and returns what it holds. */
  async close(): Promise<ClipFile> {
    if (this.closed) throw new EndocapError(ErrorCodes.CLIP_WRITE_FAILED, 'clip file already closed');
    this.closed = true;
    try {
      check(await this.context.writeTrailer(), 'finishing the clip file');
    } finally {
      await this.context.closeOutput();
      this.context.freeContext();
    }
    return {
      path: this.path,
      stream: this.stream,
      frames: this.frames,
      packetBytes: this.packetBytes,
      firstArrivedAt: this.firstArrivedAt ?? this.lastArrivedAt,
      lastArrivedAt: this.lastArrivedAt,
    };
  }

  /** Closes and deletes the file after a failure. A file already closed is left alone. Errors of the cleanup are ignored. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.opened) await this.context.closeOutput().catch(() => undefined);
    this.context.freeContext();
    await rm(this.path, { force: true }).catch(() => undefined);
  }

  /** Shifts timestamps so that the clip starts at zero and dts always increases by at least one frame. */
  private rebase(entry: EncodedPacket): { pts: bigint; dts: bigint } {
    this.offset ??= -entry.dts;
    let dts = entry.dts + this.offset;
    if (dts <= this.lastDts) {
      this.offset += this.lastDts + 1n - dts;
      dts = this.lastDts + 1n;
    }
    this.lastDts = dts;
    const pts = entry.pts + this.offset;
    return { pts: pts < dts ? dts : pts, dts };
  }
}

function check(code: number, step: string): void {
  if (code < 0) {
    throw new EndocapError(ErrorCodes.CLIP_WRITE_FAILED, `${step} failed: ${FFmpegError.strerror(code)}`, { retryable: true });
  }
}
