import './polyfill.js';
import { EventEmitter } from 'node:events';
import { Decoder, type Demuxer } from 'node-av/api';
import { avGetPixFmtName, FFmpegError, Packet, type Frame, type Stream } from 'node-av/lib';
import { AVERROR_EAGAIN, AVERROR_EOF, type AVPixelFormat } from 'node-av/constants';
import { Backoff, sleep } from '../backoff.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ImageConfig, StillSelection } from '../profile/capture-schema.js';
import type { VideoConfig } from '../profile/schema.js';
import { FocusMeter } from './focus.js';
import { FrameRing } from './frame-ring.js';
import { openInput } from './open-input.js';
import { Pacer } from './pacer.js';
import { describeSource, inputSpec, type InputSpec } from './input-spec.js';
import { findSimulatorFont } from './simulator.js';
import { StillEncoder } from './still-encoder.js';
import { StillFrameSelector } from './still-frame-selector.js';

/** Cause of a loss of signal. */
export type SignalLossReason = 'timeout' | 'end of stream' | 'open failed' | 'read failed';

export interface SignalLostEvent {
  reason: SignalLossReason;
}

export interface SignalAcquiredEvent {
  width: number;
  height: number;
  pixelFormat: string;
  /** Nominal frame rate of the stream, or 0 when the stream declares none. */
  frameRate: number;
}

export interface OpenFailedEvent {
  /** Error message from FFmpeg or endocap, without the URL. */
  reason: string;
  /** Consecutive failed attempts, 1 for the first. */
  attempt: number;
  /** Delay before the next attempt, in milliseconds. */
  retryInMs: number;
}

/**
 * A decoded frame, lent to listeners for the duration of the call: a listener
 * that keeps it takes its own reference with `frame.clone()`.
 */
export interface FrameDecodedEvent {
  frame: Frame;
  /** Wall-clock arrival time, in ms since the epoch. */
  arrivedAt: number;
  /** Nominal frames per second of the stream, 0 when it declares none. */
  frameRate: number;
}

/** A video packet read from the input, lent to listeners like FrameDecodedEvent's frame. */
export interface PacketReadEvent {
  packet: Packet;
  stream: Stream;
  /** Wall-clock read time, in ms since the epoch. */
  arrivedAt: number;
}

export interface VideoSourceEvents {
  signalAcquired: [SignalAcquiredEvent];
  signalLost: [SignalLostEvent];
  openFailed: [OpenFailedEvent];
  frameDecoded: [FrameDecodedEvent];
  packetRead: [PacketReadEvent];
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
  /** Decoded frames held for stills, at most `ringFrames`. */
  framesKept: number;
  /** Open attempts after the first one since the source was created, file loops included. */
  reopenCount: number;
}

export interface StillImage {
  jpeg: Buffer;
  width: number;
  height: number;
  /** Wall-clock arrival time of the frame the still was made from. */
  frameTime: Date;
}

export interface StillOptions {
  jpegQuality: number;
  /** Frame to use; defaults to the one on screen at the press. */
  selection?: StillSelection;
  /** Width of the window centred on the press that `sharpest` searches, in ms. */
  windowMs?: number;
}

export interface VideoSourceOptions {
  config: VideoConfig;
  log: Logger;
  /** Crop and masks applied to stills; none when absent. */
  image?: ImageConfig;
  /** Window of the sharpest-frame search, in ms; the frame ring is sized to hold it. */
  stillWindowMs?: number;
  /** Maximum time stop() waits for the decode loop and the still encoder, in milliseconds each. */
  stopTimeoutMs?: number;
}

interface SessionResult {
  reason: SignalLossReason;
  framesDecoded: number;
  /** Error message when the open or a read failed. */
  error?: string;
}

const FPS_WINDOW_MS = 2_000;

/** Frame rate assumed for sizing the ring when the profile gives none: the highest common capture rate. */
const ASSUMED_MAX_FRAME_RATE = 60;

/**
 * A live video input: opens the configured source, decodes it continuously
 * and keeps the last few frames for stills. It reports loss of signal when no
 * frame arrives for `signalTimeoutMs`, or on end of stream or error, and then
 * reopens the source with backoff until it delivers frames again.
 *
 * A `file` source is a test substitute for a live one: it is paced at its own
 * frame rate and starts over at end of file without reporting loss of signal,
 * as long as the pass delivered frames.
 */
export class VideoSource extends EventEmitter<VideoSourceEvents> {
  private readonly config: VideoConfig;
  private readonly log: Logger;
  private readonly stopTimeoutMs: number;
  private readonly ring: FrameRing;
  private readonly image: ImageConfig | undefined;
  private stillEncoder: StillEncoder;
  private readonly focusMeter: FocusMeter;
  private readonly selector: StillFrameSelector;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  /** Last state reported to listeners. It is `unknown` until the first frame or failure after start(). */
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
    this.image = options.image;
    this.ring = new FrameRing(ringCapacity(this.config, options.stillWindowMs));
    this.stillEncoder = new StillEncoder({ log: this.log, image: this.image });
    this.focusMeter = new FocusMeter({ image: this.image });
    this.selector = new StillFrameSelector({ ring: this.ring, focusMeter: this.focusMeter, log: this.log });
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
    this.stillEncoder = new StillEncoder({ log: this.log, image: this.image });
    this.log.info({ source: describeSource(this.config.source), ringFrames: this.ring.capacity }, 'video source starting');
    this.loop = this.run(abort.signal, fontFile);
  }

  /** Stops decoding and frees every frame and context, waiting at most `stopTimeoutMs`. */
  async stop(): Promise<void> {
    const loop = this.loop;
    if (loop === undefined) return;
    this.abort?.abort();
    if (!(await settlesWithin(loop, this.stopTimeoutMs))) {
      this.log.warn({ stopTimeoutMs: this.stopTimeoutMs }, 'video decode loop did not stop in time');
    }
    if (!(await settlesWithin(this.stillEncoder.close(), this.stopTimeoutMs))) {
      this.log.warn({ stopTimeoutMs: this.stopTimeoutMs }, 'still encoder did not close in time');
    }
    this.ring.clear();
    this.focusMeter.close();
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
      framesKept: this.ring.size,
      reopenCount: this.reopenCount,
    };
  }

  /**
   * Encodes the frame that was on screen at wall-clock time `atMs` (ms since
   * the epoch) as a baseline JPEG, or with `selection: 'sharpest'` the
   * sharpest frame within `windowMs` centred on it, which waits until the
   * window has passed. Throws VIDEO_NO_FRAME (retryable) when no frame is
   * kept, and STILL_ENCODE_FAILED when encoding fails.
   */
  async captureStill(atMs: number, options: StillOptions): Promise<StillImage> {
    const chosen = options.selection === 'sharpest' ? await this.selector.sharpest(atMs, options.windowMs ?? 300) : this.selector.onScreen(atMs);
    try {
      const still = await this.stillEncoder.encode(chosen.frame, options.jpegQuality);
      return { ...still, frameTime: new Date(chosen.arrivedAt) };
    } finally {
      chosen.frame.free();
    }
  }

  private async simulatorFont(): Promise<string | null> {
    if (this.config.source.kind !== 'simulator') return null;
    const fontFile = await findSimulatorFont();
    if (fontFile === undefined) {
      this.log.warn({ package: 'fonts-dejavu-core' }, 'simulator font not found, drawing no text panel');
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
        const failed = { reason: result.error ?? result.reason, attempt: backoff.failures, retryInMs };
        this.notify('openFailed', () => this.emit('openFailed', failed));
      }
      this.log.info({ reason: result.reason, failures: backoff.failures, retryInMs }, 'video source reopening');
      await sleep(retryInMs, abort);
    }
  }

  /** Opens the input, decodes until the signal is lost, and frees everything. */
  private async session(input: InputSpec, abort: AbortSignal): Promise<SessionResult> {
    let demuxer: Demuxer;
    try {
      demuxer = await openInput(input, { timeoutMs: this.config.openTimeoutMs, abort, log: this.log });
    } catch (error) {
      if (!abort.aborted) this.log.info({ source: describeSource(this.config.source), err: errorMessage(error) }, 'video source open failed');
      return { reason: 'open failed', framesDecoded: 0, error: errorMessage(error) };
    }

    let decoder: Decoder | undefined;
    try {
      const stream = demuxer.video();
      if (stream === undefined) {
        this.log.warn({ source: describeSource(this.config.source) }, 'video source has no video stream');
        return { reason: 'open failed', framesDecoded: 0, error: 'source has no video stream' };
      }
      decoder = await Decoder.create(stream, { exitOnError: false });
      const result = await this.decodeLoop(demuxer, decoder, stream, abort);
      this.log.debug({ reason: result.reason, framesDecoded: result.framesDecoded }, 'video decode loop ended');
      return result;
    } catch (error) {
      this.log.warn({ err: errorMessage(error) }, 'video decoder open failed');
      return { reason: 'open failed', framesDecoded: 0, error: errorMessage(error) };
    } finally {
      decoder?.close();
      await demuxer.close().catch((error: unknown) => this.log.warn({ err: errorMessage(error) }, 'video input close failed'));
      this.log.debug('video input closed');
    }
  }

  /**
   * Reads and decodes until the signal is lost or the source is stopped.
   * The loop calls av_read_frame itself, rather than through node-av's
   * packet generator, so that it can tell when no read is in progress: closing
   * the input while a read is blocked crashed the process (node-av 6.1.1, a
   * quiet UDP source). The caller closes the input only after this returns.
   */
  private async decodeLoop(demuxer: Demuxer, decoder: Decoder, stream: Stream, abort: AbortSignal): Promise<SessionResult> {
    const { signalTimeoutMs } = this.config;
    const formatContext = demuxer.getFormatContext();
    const pacer = this.config.source.kind === 'file' ? new Pacer(signalTimeoutMs / 2) : undefined;
    let framesDecoded = 0;
    let timedOut = false;
    let lastProgress = Date.now();
    this.lastPts = undefined;

    // A quiet source blocks or polls inside av_read_frame without error, so
    // only a watchdog can notice it. Loss is reported at once, because the
    // blocked read may return only at the protocol's own timeout: interrupt()
    // ends waits that check FFmpeg's interrupt callback, but not a UDP read.
    const watchdog = setInterval(() => {
      if (!timedOut && Date.now() - lastProgress > signalTimeoutMs) {
        timedOut = true;
        this.markLost('timeout');
        formatContext.interrupt();
      }
    }, Math.max(20, Math.min(250, signalTimeoutMs / 4)));
    const onAbort = (): void => formatContext.interrupt();
    abort.addEventListener('abort', onAbort, { once: true });

    const packet = new Packet();
    packet.alloc();
    try {
      while (!abort.aborted && !timedOut) {
        const ret = await formatContext.readFrame(packet);
        if (abort.aborted || timedOut) break;
        if (ret === AVERROR_EAGAIN) {
          // Capture devices opened non-blocking have no frame ready yet.
          await sleep(10, abort);
          continue;
        }
        if (ret === AVERROR_EOF) return { reason: 'end of stream', framesDecoded };
        if (ret < 0) {
          const error = FFmpegError.strerror(ret);
          this.log.warn({ err: error, code: ret }, 'video read failed');
          return { reason: 'read failed', framesDecoded, error };
        }

        if (packet.streamIndex === stream.index) {
          if (this.listenerCount('packetRead') > 0) {
            const read = { packet, stream, arrivedAt: Date.now() };
            this.notify('packetRead', () => this.emit('packetRead', read));
          }
          await decoder.decode(packet);
        }
        packet.unref();
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
      }
      return { reason: timedOut ? 'timeout' : 'end of stream', framesDecoded };
    } catch (caught) {
      const error = errorMessage(caught);
      this.log.warn({ err: error }, 'video decoding failed');
      return { reason: 'read failed', framesDecoded, error };
    } finally {
      clearInterval(watchdog);
      abort.removeEventListener('abort', onAbort);
      packet.free();
    }
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
      const acquired = { ...this.format };
      this.notify('signalAcquired', () => this.emit('signalAcquired', acquired));
      this.ring.push(frame, arrivedAt);
      this.warmUpStillEncoder(frame);
    } else {
      this.ring.push(frame, arrivedAt);
    }
    if (this.listenerCount('frameDecoded') > 0) {
      const decoded = { frame, arrivedAt, frameRate: this.format?.frameRate ?? 0 };
      this.notify('frameDecoded', () => this.emit('frameDecoded', decoded));
    }
  }

  /**
   * Encodes one throw-away still, so that the filter and encoder contexts
   * exist before the first real still is requested (about 40 ms at 1080p).
   */
  private warmUpStillEncoder(frame: Frame): void {
    const reference = frame.clone();
    if (reference === null) return;
    this.stillEncoder
      .encode(reference, 90)
      .catch((error: unknown) => this.log.warn({ err: errorMessage(error) }, 'still encoder warm-up failed'))
      .finally(() => reference.free());
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

  /** Runs an emit; a listener that throws is logged, so it cannot end the decode loop. */
  private notify(event: keyof VideoSourceEvents, emit: () => void): void {
    try {
      emit();
    } catch (error) {
      this.log.error({ event, err: errorMessage(error) }, 'video event listener failed');
    }
  }

  /**
   * Reports loss once per outage. The first failure after start() counts as
   * one, so that listeners learn the state. The kept frames are dropped, so that a
   * still requested during the outage fails instead of showing an old image.
   */
  private markLost(reason: SignalLossReason): void {
    if (this.state === 'lost') return;
    const wasAcquired = this.state === 'acquired';
    this.state = 'lost';
    this.ring.clear();
    this.log.warn({ reason, wasAcquired }, 'video signal lost');
    this.notify('signalLost', () => this.emit('signalLost', { reason }));
  }
}

/**
 * Frames the ring keeps: the profile's ringFrames, or enough to cover the
 * sharpest-still window at the source's frame rate, whichever is more.
 */
function ringCapacity(config: VideoConfig, stillWindowMs: number | undefined): number {
  if (stillWindowMs === undefined) return config.ringFrames;
  const frameRate = config.source.frameRate ?? ASSUMED_MAX_FRAME_RATE;
  return Math.max(config.ringFrames, Math.ceil((stillWindowMs / 1000) * frameRate) + 2);
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  const settled = promise.then(
    () => true,
    () => true,
  );
  const result = await Promise.race([settled, sleep(ms, timer.signal).then(() => false)]);
  timer.abort();
  return result;
}
