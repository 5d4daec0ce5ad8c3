import { EventEmitter } from 'node:events';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { EndocapError, ErrorCodes, errorMessage, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { ClipConfig } from '../profile/capture-schema.js';
import type { ClipSource } from './clip-source.js';
import type { ClipStream } from './clip-stream.js';
import { ClipWriter, type ClipFile } from './clip-writer.js';
import { containsParameterSets } from './h264-bitstream.js';
import type { EncodedPacket } from './packet-ring.js';

/** Cause of the end of a clip file. */
export type ClipEndReason = 'stopped' | 'max-length' | 'max-size' | 'signal-lost' | 'shutdown';

export interface ClipStartedEvent {
  clipId: string;
  /** 1 for the first file of a recording; higher for the files that continue it. */
  part: number;
  /** Video before the press that the clip contains, in ms; 0 when it continues a previous part. */
  preRecordMs: number;
}

export interface ClipClosedEvent {
  clipId: string;
  part: number;
  file: ClipFile;
  endReason: ClipEndReason;
}

export interface ClipFailedEvent {
  /** Absent when no recording started. */
  clipId?: string;
  code: ErrorCode;
  reason: string;
}

export interface ClipRecorderEvents {
  clipStarted: [ClipStartedEvent];
  clipClosed: [ClipClosedEvent];
  clipFailed: [ClipFailedEvent];
}

export interface ClipRecorderOptions {
  source: Pick<ClipSource, 'on' | 'off' | 'ring' | 'hasSignal' | 'currentStream' | 'failure'>;
  config: ClipConfig;
  /** Largest DICOM object in bytes; longer recordings continue in a new clip below it. */
  maxObjectBytes: number;
  /** Folder for clip files while they are recorded; leftovers are removed at start. */
  scratchDirectory: string;
  log: Logger;
  /** Time a stopped clip waits for the packets of frames before the press, in ms. */
  stopGraceMs?: number;
}

interface Segment {
  part: number;
  stream: ClipStream;
  writer: Promise<ClipWriter>;
  startArrivedAt: number;
  committedFrames: number;
  committedBytes: number;
  /** The group of pictures being collected; written once the next key frame shows where it ends. */
  pending: EncodedPacket[];
  pendingBytes: number;
}

interface Session {
  clipId: string;
  stopAt?: number;
  stopTimer?: NodeJS.Timeout;
  segment?: Segment;
  part: number;
  /** Writes and closes of this recording, one after another. */
  chain: Promise<void>;
  /** Files not closed yet, deleted when the recording fails. */
  openWriters: Set<Promise<ClipWriter>>;
  failed: boolean;
  oversizeReported?: boolean;
}

/** Bytes of an object besides the H.264 packets, as an upper estimate: DICOM header, PAT and PMT tables. */
const FIXED_OVERHEAD_BYTES = 64 * 1024;
/** MPEG-TS per frame: a PES header and the stuffing of its last 188-byte packet. */
const PER_FRAME_OVERHEAD_BYTES = 220;

/** Upper estimate of the DICOM object size for packets of `packetBytes` in `frames` frames. */
export function estimateObjectBytes(packetBytes: number, frames: number): number {
  // Each 188-byte TS packet carries at most 184 bytes of payload (ISO/IEC 13818-1).
  return Math.ceil((packetBytes * 188) / 184) + frames * PER_FRAME_OVERHEAD_BYTES + FIXED_OVERHEAD_BYTES;
}

/**
 * Records clips from the pre-record stream. start() opens a recording with
 * the packets of the last `preRecordSeconds` from the ring, starting at a key
 * frame, and stop() ends it after the last frame before the press. A
 * recording longer than `maxSeconds`, or larger than `maxObjectBytes`, goes on
 * in a new file at a key frame, so each file is a playable clip of its own. A
 * loss of signal closes the file; the recording goes on when frames return.
 * Several recordings may be open at once: one recording, and others still
 * waiting for their last frames after a stop.
 */
export class ClipRecorder extends EventEmitter<ClipRecorderEvents> {
  private readonly options: ClipRecorderOptions;
  private readonly log: Logger;
  private readonly maxMs: number;
  private readonly stopGraceMs: number;
  private sessions: Session[] = [];
  private sequence = 0;
  private readonly onPacket = (packet: EncodedPacket, stream: ClipStream): void => this.packetArrived(packet, stream);
  private readonly onStreamEnded = (): void => this.streamEnded();

  constructor(options: ClipRecorderOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'clip-recorder' });
    this.maxMs = options.config.maxSeconds * 1000;
    this.stopGraceMs = options.stopGraceMs ?? 3_000;
  }

  async start(): Promise<void> {
    await this.removeLeftovers();
    this.options.source.on('packet', this.onPacket);
    this.options.source.on('streamEnded', this.onStreamEnded);
  }

  /** Closes every recording with what it has, and waits until their files are closed. */
  async stop(): Promise<void> {
    this.options.source.off('packet', this.onPacket);
    this.options.source.off('streamEnded', this.onStreamEnded);
    const sessions = [...this.sessions];
    for (const session of sessions) this.finish(session, 'shutdown');
    await Promise.all(sessions.map((session) => session.chain));
  }

  /** Whether a recording is running that a press would stop. */
  get recording(): boolean {
    return this.sessions.some((session) => session.stopAt === undefined);
  }

  /** Starts a recording, or stops the running one: the same gesture does both. */
  toggle(pressedAt: number): void {
    if (this.recording) this.stopRecording(pressedAt);
    else this.startRecording(pressedAt);
  }

  /** Starts a recording whose first file contains the pre-record before `pressedAt` (ms since the epoch). */
  startRecording(pressedAt: number): void {
    if (!this.options.source.hasSignal()) {
      this.log.warn('clip not started: no video signal');
      this.emitSafely(() => this.emit('clipFailed', { code: ErrorCodes.CLIP_NO_SIGNAL, reason: 'no video signal' }));
      return;
    }
    const failure = this.options.source.failure();
    if (failure !== undefined) {
      this.log.warn({ code: failure.code }, 'clip not started: the pre-record stream has failed');
      this.emitSafely(() => this.emit('clipFailed', { code: failure.code, reason: failure.message }));
      return;
    }
    this.sequence += 1;
    const session: Session = { clipId: `clip-${pressedAt}-${this.sequence}`, part: 0, chain: Promise.resolve(), openWriters: new Set(), failed: false };
    this.sessions.push(session);

    const stream = this.options.source.currentStream();
    const packets = this.options.source.ring.from(pressedAt - this.options.config.preRecordSeconds * 1000);
    if (stream !== undefined) for (const packet of packets) this.feed(session, packet, stream);
    const first = packets[0];
    const preRecordMs = first === undefined ? 0 : Math.max(0, pressedAt - first.arrivedAt);
    this.log.info({ clipId: session.clipId, preRecordMs }, 'clip started');
    this.emitSafely(() => this.emit('clipStarted', { clipId: session.clipId, part: 1, preRecordMs }));
  }

  /** Ends the running recording after the last frame that arrived by `pressedAt`. */
  stopRecording(pressedAt: number): void {
    const session = this.sessions.find((candidate) => candidate.stopAt === undefined);
    if (session === undefined) return;
    session.stopAt = pressedAt;
    // The gesture is recognised after the press (debounce, long-press time):
    // frames from after the press that are not yet written are dropped.
    // NOTE: frames after the press that were already written, because a key
    // frame came in between, stay in the clip.
    const segment = session.segment;
    if (segment !== undefined) {
      segment.pending = segment.pending.filter((packet) => packet.arrivedAt <= pressedAt);
      segment.pendingBytes = segment.pending.reduce((total, packet) => total + packet.data.length, 0);
    }
    // A source that stops delivering must not hold the clip open.
    session.stopTimer = setTimeout(() => this.finish(session, 'stopped'), this.stopGraceMs);
    this.log.info({ clipId: session.clipId }, 'clip stop requested');
  }

  private packetArrived(packet: EncodedPacket, stream: ClipStream): void {
    for (const session of [...this.sessions]) {
      if (session.stopAt !== undefined && packet.arrivedAt > session.stopAt) {
        this.finish(session, 'stopped');
        continue;
      }
      this.feed(session, packet, stream);
    }
  }

  private streamEnded(): void {
    for (const session of [...this.sessions]) {
      if (session.stopAt !== undefined) this.finish(session, 'signal-lost');
      else this.closeSegment(session, 'signal-lost');
    }
  }

  private feed(session: Session, packet: EncodedPacket, stream: ClipStream): void {
    if (session.failed) return;
    let segment = session.segment;
    if (segment !== undefined && segment.stream.generation !== stream.generation) {
      this.closeSegment(session, 'signal-lost');
      segment = undefined;
    }
    if (segment === undefined) {
      if (!packet.keyFrame) return;
      segment = this.openSegment(session, stream, packet.arrivedAt);
    }

    if (packet.keyFrame && segment.pending.length > 0) {
      segment = this.splitIfFull(session, segment, packet.arrivedAt);
      this.commitPending(session, segment);
    }
    this.addPending(segment, packet);
  }

  /**
   * Moves the pending group of pictures into a new file when adding it to
   * this one, up to `endAt`, would pass the length or size limit. Returns the
   * segment the pending group now belongs to.
   */
  private splitIfFull(session: Session, segment: Segment, endAt: number): Segment {
    const lengthMs = endAt - segment.startArrivedAt;
    // Half a frame of slack, so that arrival jitter does not end a clip one group early.
    const slackMs = 500 / (segment.stream.frameRate > 0 ? segment.stream.frameRate : 30);
    const bytes = estimateObjectBytes(segment.committedBytes + segment.pendingBytes, segment.committedFrames + segment.pending.length);
    let full: ClipEndReason | undefined;
    if (lengthMs > this.maxMs + slackMs) full = 'max-length';
    else if (bytes > this.options.maxObjectBytes) full = 'max-size';
    if (full === undefined) return segment;
    if (segment.committedFrames === 0) {
      // A clip cannot be cut inside a group of pictures: this one goes out larger than the limit.
      if (!session.oversizeReported) this.log.warn({ clipId: session.clipId, bytes, maxObjectBytes: this.options.maxObjectBytes, lengthMs }, 'one group of pictures exceeds the clip limit');
      session.oversizeReported = true;
      return segment;
    }
    const carried = segment.pending;
    segment.pending = [];
    segment.pendingBytes = 0;
    this.closeSegment(session, full);
    const next = this.openSegment(session, segment.stream, carried[0]?.arrivedAt ?? endAt);
    for (const entry of carried) this.addPending(next, entry);
    return next;
  }

  private addPending(segment: Segment, packet: EncodedPacket): void {
    // A copied stream may carry SPS and PPS only now and then; every clip needs them at its start.
    const data = packet.keyFrame && !containsParameterSets(packet.data) ? Buffer.concat([segment.stream.parameterSets, packet.data]) : packet.data;
    segment.pending.push(data === packet.data ? packet : { ...packet, data });
    segment.pendingBytes += data.length;
  }

  private openSegment(session: Session, stream: ClipStream, startArrivedAt: number): Segment {
    session.part += 1;
    const file = path.join(this.options.scratchDirectory, `${session.clipId}-${session.part}.ts`);
    const writer = ClipWriter.open(file, stream);
    // The failure is handled where the chain awaits the writer.
    writer.catch(() => undefined);
    session.openWriters.add(writer);
    const segment: Segment = { part: session.part, stream, writer, startArrivedAt, committedFrames: 0, committedBytes: 0, pending: [], pendingBytes: 0 };
    session.segment = segment;
    if (session.part > 1) this.emitSafely(() => this.emit('clipStarted', { clipId: session.clipId, part: segment.part, preRecordMs: 0 }));
    return segment;
  }

  private commitPending(session: Session, segment: Segment): void {
    const packets = segment.pending;
    if (packets.length === 0) return;
    segment.pending = [];
    segment.committedFrames += packets.length;
    segment.committedBytes += segment.pendingBytes;
    segment.pendingBytes = 0;
    this.enqueue(session, async () => (await segment.writer).write(packets));
  }

  private closeSegment(session: Session, endReason: ClipEndReason): void {
    let segment = session.segment;
    if (segment === undefined) return;
    const last = segment.pending[segment.pending.length - 1];
    if (last !== undefined) {
      const frameMs = 1000 / (segment.stream.frameRate > 0 ? segment.stream.frameRate : 30);
      segment = this.splitIfFull(session, segment, last.arrivedAt + frameMs);
    }
    session.segment = undefined;
    this.commitPending(session, segment);
    this.enqueue(session, async () => {
      const writer = await segment.writer;
      session.openWriters.delete(segment.writer);
      if (segment.committedFrames === 0) {
        await writer.abort();
        return;
      }
      const file = await writer.close();
      this.log.info({ clipId: session.clipId, part: segment.part, frames: file.frames, bytes: file.packetBytes, endReason }, 'clip file closed');
      this.emitSafely(() => this.emit('clipClosed', { clipId: session.clipId, part: segment.part, file, endReason }));
    });
  }

  private finish(session: Session, endReason: ClipEndReason): void {
    if (!this.sessions.includes(session)) return;
    clearTimeout(session.stopTimer);
    this.sessions = this.sessions.filter((candidate) => candidate !== session);
    this.closeSegment(session, endReason);
  }

  /** Runs a file step after the previous ones; a failure ends the recording and deletes its open file. */
  private enqueue(session: Session, step: () => Promise<void>): void {
    session.chain = session.chain.then(async () => {
      if (session.failed) return;
      try {
        await step();
      } catch (error) {
        session.failed = true;
        clearTimeout(session.stopTimer);
        session.segment = undefined;
        this.sessions = this.sessions.filter((candidate) => candidate !== session);
        const failure = error instanceof EndocapError ? error : new EndocapError(ErrorCodes.CLIP_WRITE_FAILED, `clip file write failed: ${errorMessage(error)}`);
        this.log.error({ clipId: session.clipId, code: failure.code, err: failure.message }, 'clip recording failed');
        for (const open of session.openWriters) {
          const writer = await open.catch(() => undefined);
          await writer?.abort();
        }
        session.openWriters.clear();
        this.emitSafely(() => this.emit('clipFailed', { clipId: session.clipId, code: failure.code, reason: failure.message }));
      }
    });
  }

  private async removeLeftovers(): Promise<void> {
    const directory = this.options.scratchDirectory;
    await mkdir(directory, { recursive: true });
    const leftovers = (await readdir(directory)).filter((name) => name.endsWith('.ts'));
    // NOTE: a clip being recorded when the process died is lost; its file has no DICOM header yet.
    for (const name of leftovers) await rm(path.join(directory, name), { force: true });
    if (leftovers.length > 0) this.log.warn({ files: leftovers.length }, 'unfinished clip files from a previous run removed');
  }

  private emitSafely(emit: () => void): void {
    try {
      emit();
    } catch (error) {
      this.log.error({ err: errorMessage(error) }, 'clip recorder listener failed');
    }
  }
}
