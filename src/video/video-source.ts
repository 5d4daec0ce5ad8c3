import './polyfill.js';
import { EventEmitter } from 'node:events';
import { Decoder, Demuxer } from 'node-av/api';
import { avGetPixFmtName, type Frame, type Stream } from 'node-av/lib';
import { AV_NOPTS_VALUE, type AVPixelFormat } from 'node-av/constants';
import { Backoff, sleep } from '../backoff.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { VideoConfig } from '../profile/schema.js';
import { FrameRing } from './frame-ring.js';
import { describeSource, inputSpec, type InputSpec } from './input-spec.js';
import { findSimulatorFont } from './simulator.js';
import { StillEncoder } from './still-encoder.js';

export interface SignalLostEvent {
  /** Why the source stopped: `timeout`, `end of stream`, `open failed` or `read failed`. */
  reason: string;
}

export interface SignalAcquiredEvent {
  width: number;
  height: number;
  pixelFormat: string;
  /** Nominal frame rate of the stream; 0 when the stream does not declare one. */
  frameRate: number;
}

export interface OpenFailedEvent {
  /** Error message; names the source kind and setting only. */
  reason: string;
  /** Consecutive failed attempts, 1 for the first. */
  attempt: number;
  /** Delay before the next attempt, in milliseconds. */
  retryInMs: number;
}

export interface VideoSourceEvents {
  signalAcquired: [SignalAcquiredEvent];
  signalLost: [SignalLostEvent];
  openFailed: [OpenFailedEvent];
}

export interface VideoSourceStatus {
  signal: boolean;
  width?: number;
  height?: number;
  pixelFormat?: string;
  /** Frames per second measured over the last two seconds. */
  fps: number;
  framesDecoded: number;
  /** Frames missing from the stream, counted from gaps in presentation timestamps. */
  framesDropped: number;
  /** Open attempts after the first one since start(). */
  reopenCount: number;
}

export interface StillImage {
  jpeg: Buffer;
  width: number;
  height: number;
  /** Wall-clock arrival time of the frame the still was made from. */
  frameTime: Date;
}

export interface VideoSourceOptions {
  config: VideoConfig;
  log: Logger;
  /** Longest time stop() waits for the decode loop, in milliseconds. */
  stopTimeoutMs?: number;
}

interface SessionResult {
  reason: string;
  framesDecoded: number;
}

const FPS_WINDOW_MS = 2_000;

/**
 * A live video input: opens the configured source, decodes it continuously
 * and keeps the last few frames for stills. It reports loss of signal when no
 * frame arrives for `signalTimeoutMs`, or on end of stream or error, and then
 * reopens the source with backoff until it delivers frames again.
 *
 * A `file` source stands in for a live one: it is paced at its own frame rate
 * and starts over at end of file without reporting loss of signal, as long as
 * the pass delivered frames.
 */
export class VideoSource extends EventEmitter<VideoSourceEvents> {
  private readonly config: VideoConfig;
  private readonly log: Logger;
  private readonly stopTimeoutMs: number;
  private readonly ring: FrameRing;
  private readonly stillEncoder: StillEncoder;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  /** Last state reported to listeners; `unknown` until the first frame or failure after start(). */
  private state: 'unknown' | 'acquired' | 'lost' = 'unknown';
  private format: SignalAcquiredEvent | undefined;
  private framesDecoded = 0;
  private framesDropped = 0;
  private reopenCount = 0;
  private arrivals: number[] = [];
  private lastPts: bigint | undefined;

  constructor(options: VideoSourceOptions) {
    super();
    this.config = options.config;
    this.log = options.log.child({ component: 'video' });
    this.stopTimeoutMs = options.stopTimeoutMs ?? 3_000;
    this.ring = new FrameRing(this.config.ringFrames);
    this.stillEncoder = new StillEncoder({ log: this.log });
  }

  /**
   * Starts the open-and-decode loop and returns once it runs. A missing or
   * failing source does not make this throw: the loop keeps retrying.
   */
  async start(): Promise<void> {
    if (this.loop !== undefined) return;
    const fontFile = await this.simulatorFont();
    const abort = new AbortController();
    this.abort = abort;
    this.log.info({ source: describeSource(this.config.source), ringFrames: this.config.ringFrames }, 'video source starting');
    this.loop = this.run(abort.signal, fontFile);
  }

  /** Stops decoding and frees every frame and context, waiting at most `stopTimeoutMs`. */
  async stop(): Promise<void> {
    const loop = this.loop;
    if (loop === undefined) return;
    this.abort?.abort();
    const finished = await Promise.race([loop.then(() => true), sleep(this.stopTimeoutMs).then(() => false)]);
    if (!finished) this.log.warn({ stopTimeoutMs: this.stopTimeoutMs }, 'video decode loop did not stop in time');
    await Promise.race([this.stillEncoder.close(), sleep(this.stopTimeoutMs)]);
    this.ring.clear();
    this.loop = undefined;
    this.abort = undefined;
    this.state = 'unknown';
    this.log.info({ framesDecoded: this.framesDecoded }, 'video source stopped');
  }

  status(): VideoSourceStatus {
    const now = Date.now();
    const recent = this.arrivals.filter((time) => now - time <= FPS_WINDOW_MS);
    const first = recent[0];
    const last = recent[recent.length - 1];
    const fps = first !== undefined && last !== undefined && last > first ? ((recent.length - 1) * 1000) / (last - first) : 0;
    return {
      signal: this.state === 'acquired',
      width: this.format?.width,
      height: this.format?.height,
      pixelFormat: this.format?.pixelFormat,
      fps: Math.round(fps * 10) / 10,
      framesDecoded: this.framesDecoded,
      framesDropped: this.framesDropped,
      reopenCount: this.reopenCount,
    };
  }

  /**
   * Encodes the frame that was on screen at wall-clock time `atMs` (ms since
   * the epoch) as a baseline JPEG. Throws VIDEO_NO_FRAME (retryable) when no
   * frame is kept, and STILL_ENCODE_FAILED when encoding fails.
   */
  async captureStill(atMs: number, options: { jpegQuality: number }): Promise<StillImage> {
    const entry = this.ring.frameAt(atMs);
    if (entry === undefined) {
      throw new EndocapError(ErrorCodes.VIDEO_NO_FRAME, 'no video frame available for a still', { retryable: true });
    }
    // Our own reference, so the ring may free its frame while we encode.
    const frame = entry.frame.clone();
    if (frame === null) {
      throw new EndocapError(ErrorCodes.STILL_ENCODE_FAILED, 'could not reference the video frame (out of memory)', { retryable: true });
    }
    try {
      const still = await this.stillEncoder.encode(frame, options.jpegQuality);
      return { ...still, frameTime: new Date(entry.arrivedAt) };
    } finally {
      frame.free();
    }
  }

  private async simulatorFont(): Promise<string | null> {
    if (this.config.source.kind !== 'simulator') return null;
    const fontFile = await findSimulatorFont();
    if (fontFile === undefined) {
      this.log.warn('no font found for the simulator text panel; install fonts-dejavu-core');
      return null;
    }
    return fontFile;
  }

  private async run(abort: AbortSignal, fontFile: string | null): Promise<void> {
    const { reopen, source, signalTimeoutMs } = this.config;
    const backoff = new Backoff({ initialMs: reopen.initialMs, maxMs: reopen.maxMs, multiplier: reopen.multiplier });
    const input = inputSpec(source, { fontFile, ioTimeoutMs: signalTimeoutMs });
    let attempt = 0;

    while (!abort.aborted) {
      if (attempt > 0) this.reopenCount += 1;
      attempt += 1;
      const result = await this.session(input, abort);
      if (abort.aborted) break;

      // A file that played through is looped at once, like a live feed.
      if (source.kind === 'file' && result.reason === 'end of stream' && result.framesDecoded > 0) {
        backoff.reset();
        continue;
      }
      if (result.framesDecoded > 0) backoff.reset();
      this.markLost(result.reason);
      const retryInMs = backoff.next();
      if (result.reason === 'open failed') {
        this.emit('openFailed', { reason: result.reason, attempt: backoff.failures, retryInMs });
      }
      this.log.info({ reason: result.reason, failures: backoff.failures, retryInMs }, 'video source reopening');
      await sleep(retryInMs, abort);
    }
  }

  /** Opens the input, decodes until the signal is lost, and frees everything. */
  private async session(input: InputSpec, abort: AbortSignal): Promise<SessionResult> {
    let demuxer: Demuxer;
    try {
      demuxer = await this.open(input, abort);
    } catch (error) {
      if (!abort.aborted) this.log.info({ source: describeSource(this.config.source), err: errorMessage(error) }, 'video source open failed');
      return { reason: 'open failed', framesDecoded: 0 };
    }

    let decoder: Decoder | undefined;
    try {
      const stream = demuxer.video();
      if (stream === undefined) {
        this.log.warn({ source: describeSource(this.config.source) }, 'video source has no video stream');
        return { reason: 'open failed', framesDecoded: 0 };
      }
      decoder = await Decoder.create(stream, { exitOnError: false });
      return await this.decodeLoop(demuxer, decoder, stream, abort);
    } catch (error) {
      this.log.warn({ err: errorMessage(error) }, 'video decoding failed');
      return { reason: 'read failed', framesDecoded: 0 };
    } finally {
      decoder?.close();
      await demuxer.close().catch((error: unknown) => this.log.warn({ err: errorMessage(error) }, 'video input close failed'));
    }
  }

  /**
   * Calls Demuxer.open with `openTimeoutMs`. node-av offers no way to abort
   * an open in progress, so on timeout or stop the open is left to finish on
   * its libuv thread and its result is closed then.
   */
  private async open(input: InputSpec, abort: AbortSignal): Promise<Demuxer> {
    const opening = Demuxer.open(input.url, { format: input.format, options: input.options });
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const cutoff = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new EndocapError(ErrorCodes.VIDEO_OPEN_FAILED, `video source open timed out after ${this.config.openTimeoutMs} ms`, { retryable: true })), this.config.openTimeoutMs);
      onAbort = () => reject(new EndocapError(ErrorCodes.VIDEO_OPEN_FAILED, 'video source stopped while opening'));
      abort.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const demuxer = await Promise.race([opening, cutoff]);
      settled = true;
      return demuxer;
    } catch (error) {
      if (error instanceof EndocapError) throw error;
      throw new EndocapError(ErrorCodes.VIDEO_OPEN_FAILED, `video source open failed: ${errorMessage(error)}`, { cause: error, retryable: true });
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) abort.removeEventListener('abort', onAbort);
      if (!settled) {
        opening
          .then((late) => late.close())
          .catch((error: unknown) => this.log.debug({ err: errorMessage(error) }, 'abandoned video open failed'));
      }
    }
  }

  private async decodeLoop(demuxer: Demuxer, decoder: Decoder, stream: Stream, abort: AbortSignal): Promise<SessionResult> {
    const { signalTimeoutMs } = this.config;
    const pacer = this.config.source.kind === 'file' ? new Pacer(signalTimeoutMs / 2) : undefined;
    let framesDecoded = 0;
    let timedOut = false;
    let lastProgress = Date.now();
    this.lastPts = undefined;

    // A quiet source blocks or polls inside av_read_frame without error, so
    // only a watchdog can notice it. Interrupting ends the packet generator.
    const watchdog = setInterval(() => {
      if (Date.now() - lastProgress > signalTimeoutMs) {
        timedOut = true;
        demuxer.interrupt();
      }
    }, Math.max(20, Math.min(250, signalTimeoutMs / 4)));
    const onAbort = (): void => demuxer.interrupt();
    abort.addEventListener('abort', onAbort, { once: true });

    try {
      for await (const packet of demuxer.packets(stream.index)) {
        if (packet === null) break;
        try {
          await decoder.decode(packet);
        } finally {
          packet.free();
        }
        for (let frame = await decoder.receive(); frame; frame = await decoder.receive()) {
          if (abort.aborted || timedOut) {
            frame.free();
            break;
          }
          lastProgress = Date.now();
          if (pacer !== undefined) await pacer.wait(frame, abort);
          framesDecoded += 1;
          this.accept(frame, stream, Date.now());
        }
        if (abort.aborted || timedOut) break;
      }
    } finally {
      clearInterval(watchdog);
      abort.removeEventListener('abort', onAbort);
    }
    return { reason: timedOut ? 'timeout' : 'end of stream', framesDecoded };
  }

  /** Takes ownership of a decoded frame: counts it, reports a new signal, and keeps it in the ring. */
  private accept(frame: Frame, stream: Stream, arrivedAt: number): void {
    this.framesDecoded += 1;
    this.countDropped(frame);
    this.arrivals.push(arrivedAt);
    while (this.arrivals.length > 0 && arrivedAt - (this.arrivals[0] ?? arrivedAt) > FPS_WINDOW_MS) this.arrivals.shift();

    if (this.state !== 'acquired') {
      const rate = stream.avgFrameRate.num > 0 ? stream.avgFrameRate : stream.rFrameRate;
      this.format = {
        width: frame.width,
        height: frame.height,
        pixelFormat: avGetPixFmtName(frame.format as AVPixelFormat) ?? String(frame.format),
        frameRate: rate.den > 0 ? Math.round((rate.num / rate.den) * 1000) / 1000 : 0,
      };
      this.state = 'acquired';
      this.log.info(this.format, 'video signal acquired');
      this.emit('signalAcquired', { ...this.format });
    }
    this.ring.push(frame, arrivedAt);
  }

  /** Adds the frames missing between this frame and the previous one, judged by pts and frame duration. */
  private countDropped(frame: Frame): void {
    const pts = frame.pts;
    const duration = frame.duration;
    if (this.lastPts !== undefined && duration > 0n && pts > this.lastPts) {
      const missing = Number((pts - this.lastPts + duration / 2n) / duration) - 1;
      if (missing > 0) this.framesDropped += missing;
    }
    this.lastPts = pts;
  }

  /** Reports loss once per outage; the first failure after start() counts as one, so listeners learn the state. */
  private markLost(reason: string): void {
    if (this.state === 'lost') return;
    const wasAcquired = this.state === 'acquired';
    this.state = 'lost';
    this.log.warn({ reason, wasAcquired }, 'video signal lost');
    this.emit('signalLost', { reason });
  }
}

/**
 * Holds frames of a file back to its own frame rate, measured from the first
 * frame of the pass. A timestamp jump longer than `maxDelayMs` restarts the
 * clock instead of stalling past the signal timeout.
 */
class Pacer {
  private originPts: bigint | undefined;
  private originMs = 0;

  constructor(private readonly maxDelayMs: number) {}

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
