import './polyfill.js';
import { Encoder, FilterAPI, HardwareContext } from 'node-av/api';
import {
  AV_HWDEVICE_TYPE_QSV,
  AV_HWDEVICE_TYPE_VAAPI,
  AV_LOG_ERROR,
  AV_NOPTS_VALUE,
  AV_PICTURE_TYPE_NONE,
  AV_PIX_FMT_YUV420P,
  AV_PROFILE_H264_HIGH,
  FF_ENCODER_H264_QSV,
  FF_ENCODER_H264_V4L2M2M,
  FF_ENCODER_H264_VAAPI,
  FF_ENCODER_LIBX264,
  type AVPixelFormat,
} from 'node-av/constants';
import { avGetPixFmtName, Log, Rational, type Frame, type Packet } from 'node-av/lib';
import { requiredH264Level } from '../dicom/video-transfer-syntax.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ClipEncoderConfig, ImageConfig } from '../profile/capture-schema.js';
import { containsIdr, parameterSets, parseSps } from './h264-bitstream.js';
import { croppedSize, imageFilterSteps } from './image-filter.js';
import type { EncodedPacket } from './packet-ring.js';
import type { ClipStream } from './clip-stream.js';
import { isFullRange } from './still-encoder.js';

export interface ClipEncoderOptions {
  config: ClipEncoderConfig;
  image: ImageConfig;
  log: Logger;
  onPacket: (packet: EncodedPacket, stream: ClipStream) => void;
  /** Called once when frames cannot be encoded until reset(). */
  onFailed: (error: EndocapError) => void;
  /** Time of frames waiting for the encoder, in ms; newer frames are dropped while it is full. Default 250. */
  maxQueuedMs?: number;
}

export interface ClipEncoderStatus {
  /** Encoder in use, such as libx264; undefined before the first frame. */
  encoder?: string;
  framesEncoded: number;
  /** Frames dropped because the encoder fell behind. */
  framesDropped: number;
}

interface QueuedFrame {
  frame: Frame;
  arrivedAt: number;
  frameRate: number;
}

/**
 * VBV limits that keep libx264 within level 4.1 and 4.2 of High Profile
 * (H.264 Table A-1: MaxBR 62 500 kb/s and MaxCPB 78 125 kbit for High
 * Profile), with some margin, in bits per second and bits.
 */
const MAX_RATE = 50_000_000;
const BUFFER_SIZE = 62_500_000;

const HARDWARE_ENCODERS = { h264_vaapi: FF_ENCODER_H264_VAAPI, h264_qsv: FF_ENCODER_H264_QSV, h264_v4l2m2m: FF_ENCODER_H264_V4L2M2M } as const;

/** Bit rate of hardware encoders when the profile gives none: about what libx264 at CRF 23 needs for 1080p endoscopy. */
const DEFAULT_HARDWARE_BIT_RATE = 8_000_000;

/**
 * Encodes decoded frames into the H.264 pre-record stream. Each frame is
 * converted to limited-range 4:2:0 with the profile's masks and crop, then
 * encoded with B-frames off (so packets come in presentation order and a clip
 * can end at any packet) and a key frame every `keyFrameIntervalSeconds`.
 * Encoding runs on libuv threads; a bounded queue sits in front, and frames
 * arriving while it is full are dropped and counted.
 */
export class ClipEncoder {
  private readonly options: ClipEncoderOptions;
  private readonly log: Logger;
  private readonly maxQueuedMs: number;
  private queue: QueuedFrame[] = [];
  private working: Promise<void> | undefined;
  private encoder: Encoder | undefined;
  private encoderName = '';
  private hardware: HardwareContext | undefined;
  private filter: FilterAPI | undefined;
  private key = '';
  private stream: ClipStream | undefined;
  private generation = 0;
  private failed = false;
  private firstSeconds: number | undefined;
  private lastPts = -1n;
  private arrivals = new Map<bigint, number>();
  private framesEncoded = 0;
  private framesDropped = 0;

  constructor(options: ClipEncoderOptions) {
    this.options = options;
    this.log = options.log.child({ component: 'clip-encoder' });
    this.maxQueuedMs = options.maxQueuedMs ?? 250;
    // libx264 prints statistics on stderr when it closes; errors still show.
    Log.setLevel(AV_LOG_ERROR);
  }

  /** Queues a borrowed frame for encoding; a reference is taken, so the caller keeps its own. */
  submit(frame: Frame, arrivedAt: number, frameRate: number): void {
    if (this.failed) return;
    // At least 8 frames, so that a slow moment at low frame rates drops nothing either.
    // Each queued 1080p frame is about 3 MB.
    const maxQueued = Math.max(8, Math.ceil((frameRate * this.maxQueuedMs) / 1000));
    if (this.queue.length >= maxQueued) {
      this.framesDropped += 1;
      if (this.framesDropped % 100 === 1) this.log.warn({ framesDropped: this.framesDropped }, 'clip encoder behind, frames dropped');
      return;
    }
    const reference = frame.clone();
    if (reference === null) return;
    this.queue.push({ frame: reference, arrivedAt, frameRate });
    this.working ??= this.drain().finally(() => {
      this.working = undefined;
    });
  }

  /** Drops queued frames and frees the encoder, for a new stream after a loss of signal. */
  async reset(): Promise<void> {
    for (const queued of this.queue.splice(0)) queued.frame.free();
    await this.working;
    this.release();
    this.failed = false;
  }

  /** Encodes what is queued, flushes the encoder's delayed packets to onPacket, then frees it. */
  async close(): Promise<void> {
    await this.working;
    await this.flush();
    this.release();
  }

  status(): ClipEncoderStatus {
    return { encoder: this.encoderName || undefined, framesEncoded: this.framesEncoded, framesDropped: this.framesDropped };
  }

  private async drain(): Promise<void> {
    for (let next = this.queue.shift(); next !== undefined; next = this.queue.shift()) {
      try {
        if (!this.failed) await this.encodeOne(next);
      } catch (error) {
        this.fail(error);
      } finally {
        next.frame.free();
      }
    }
  }

  private async encodeOne(queued: QueuedFrame): Promise<void> {
    const frameRate = queued.frameRate > 0 ? queued.frameRate : 30;
    const size = croppedSize(this.options.image, queued.frame.width, queued.frame.height);
    const pts = this.nextPts(queued, frameRate);
    this.arrivals.set(pts, queued.arrivedAt);
    try {
      await this.encodeConverted(queued.frame, pts, await this.encoderFor(size, frameRate), frameRate);
    } catch (error) {
      // A hardware encoder that fails on its first frame is replaced by libx264.
      if (this.encoderName === 'libx264' || this.framesEncoded > 0) throw error;
      this.log.warn({ encoder: this.encoderName, err: errorMessage(error) }, 'hardware clip encoder unavailable, using libx264');
      this.release();
      this.arrivals.set(pts, queued.arrivedAt);
      await this.encodeConverted(queued.frame, pts, await this.encoderFor(size, frameRate, 'libx264'), frameRate);
    }
    this.framesEncoded += 1;
    await this.receivePackets(frameRate);
  }

  private async encodeConverted(frame: Frame, pts: bigint, encoder: Encoder, frameRate: number): Promise<void> {
    const converted = await this.convert(frame, frameRate);
    try {
      converted.pts = pts;
      converted.timeBase = frameRateRational(frameRate).inv();
      converted.duration = 1n;
      // The encoder decides picture types; a decoded I or P type would force it.
      converted.pictType = AV_PICTURE_TYPE_NONE;
      await encoder.encode(converted);
    } finally {
      if (converted !== frame) converted.free();
    }
  }

  /** Converts to limited-range yuv420p with masks and crop; returns the frame itself when nothing needs changing. */
  private async convert(frame: Frame, frameRate: number): Promise<Frame> {
    const steps = imageFilterSteps(this.options.image, frame.width, frame.height);
    const fullRange = isFullRange(frame);
    if (steps.length === 0 && !fullRange && frame.format === AV_PIX_FMT_YUV420P && this.hardware === undefined) return frame;

    const key = `${frame.width}x${frame.height}/${frame.format}/${fullRange}/${frameRate}`;
    if (this.filter === undefined || this.key !== key) {
      this.filter?.close();
      this.key = key;
      const description = [`scale=in_range=${fullRange ? 'pc' : 'tv'}:out_range=tv`, 'format=yuv420p', ...steps, ...this.uploadSteps()].join(',');
      this.filter = FilterAPI.create(description, { threads: 1, hardware: this.hardware ?? null });
      this.log.debug({ pixelFormat: avGetPixFmtName(frame.format as AVPixelFormat), steps: steps.length }, 'clip filter created');
    }
    await this.filter.process(frame);
    const output = await this.filter.receive();
    if (output === null || output === undefined) throw new EndocapError(ErrorCodes.CLIP_ENCODE_FAILED, 'clip filter returned no frame');
    return output;
  }

  private uploadSteps(): string[] {
    return this.hardware === undefined ? [] : ['format=nv12', 'hwupload'];
  }

  /** Presentation time in frames from the first frame, from the source's own timestamps so that dropped frames leave gaps. */
  private nextPts(queued: QueuedFrame, frameRate: number): bigint {
    const { frame } = queued;
    const timeBase = frame.timeBase;
    const seconds = frame.pts !== AV_NOPTS_VALUE && timeBase.den > 0 ? (Number(frame.pts) * timeBase.num) / timeBase.den : queued.arrivedAt / 1000;
    this.firstSeconds ??= seconds;
    let pts = BigInt(Math.round((seconds - this.firstSeconds) * frameRate));
    if (pts <= this.lastPts) pts = this.lastPts + 1n;
    this.lastPts = pts;
    return pts;
  }

  private async encoderFor(size: { width: number; height: number }, frameRate: number, codec = this.options.config.codec): Promise<Encoder> {
    if (this.encoder !== undefined) return this.encoder;
    const level = requiredH264Level(size.width, size.height, frameRate);
    if (level === undefined) {
      throw new EndocapError(
        ErrorCodes.CLIP_NOT_DICOM_COMPLIANT,
        `${size.width}x${size.height} at ${frameRate} frames per second exceeds H.264 High Profile level 4.2, the highest a DICOM H.264 transfer syntax allows; crop the picture or lower the frame rate`,
      );
    }
    if (codec !== 'libx264') {
      try {
        this.encoder = await this.createHardware(codec, frameRate, level);
      } catch (error) {
        this.log.warn({ encoder: codec, err: errorMessage(error) }, 'hardware clip encoder unavailable, using libx264');
        this.releaseHardware();
      }
    }
    this.encoder ??= await this.createLibx264(frameRate, level);
    this.generation += 1;
    this.log.info({ encoder: this.encoderName, width: size.width, height: size.height, frameRate, level: level / 10 }, 'clip encoder opened');
    return this.encoder;
  }

  private async createLibx264(frameRate: number, level: 41 | 42): Promise<Encoder> {
    const { preset, crf, bitRate, keyFrameIntervalSeconds, threads } = this.options.config;
    this.encoderName = 'libx264';
    const rate = frameRateRational(frameRate);
    return Encoder.create(FF_ENCODER_LIBX264, {
      context: {
        // Bit rate 0 with crf, because node-av would default to 1 Mb/s.
        bitRate: bitRate ?? 0,
        rcMaxRate: bitRate ?? MAX_RATE,
        rcBufferSize: bitRate !== undefined ? 2 * bitRate : BUFFER_SIZE,
        gopSize: Math.max(1, Math.round(frameRate * keyFrameIntervalSeconds)),
        maxBFrames: 0,
        framerate: rate,
        timeBase: rate.inv(),
        sampleAspectRatio: new Rational(1, 1),
        threadCount: threads,
      },
      options: {
        preset,
        ...(bitRate === undefined ? { crf } : {}),
        profile: 'high',
        level: (level / 10).toFixed(1),
        // x264 writes the profile its tools need, not the one requested: the
        // faster presets turn off 8x8 transforms (and ultrafast CABAC), and
        // the SPS then declares Constrained Baseline. Both on make it High.
        // Checked with node-av 6.1.1: ultrafast with profile high wrote profile_idc 66.
        'x264-params': '8x8dct=1:cabac=1',
      },
    });
  }

  /**
   * Opens a hardware encoder. Throws when the device or encoder is missing; the
   * caller then uses libx264.
   * NOTE: written against node-av's hardware API but never run on real hardware
   * here; only its fallback path is tested.
   */
  private async createHardware(codec: Exclude<ClipEncoderConfig['codec'], 'libx264'>, frameRate: number, level: 41 | 42): Promise<Encoder> {
    const { device, bitRate, keyFrameIntervalSeconds } = this.options.config;
    if (codec === 'h264_vaapi' || codec === 'h264_qsv') {
      const hardware = HardwareContext.create(codec === 'h264_vaapi' ? AV_HWDEVICE_TYPE_VAAPI : AV_HWDEVICE_TYPE_QSV, device);
      if (hardware === null) throw new EndocapError(ErrorCodes.CLIP_ENCODE_FAILED, `no ${codec} device${device ? ` at ${device}` : ''}`);
      this.hardware = hardware;
      // The filter needs rebuilding with the upload steps.
      this.filter?.close();
      this.filter = undefined;
    }
    this.encoderName = codec;
    const rate = frameRateRational(frameRate);
    return Encoder.create(HARDWARE_ENCODERS[codec], {
      context: {
        bitRate: bitRate ?? DEFAULT_HARDWARE_BIT_RATE,
        rcMaxRate: MAX_RATE,
        gopSize: Math.max(1, Math.round(frameRate * keyFrameIntervalSeconds)),
        maxBFrames: 0,
        framerate: rate,
        timeBase: rate.inv(),
        sampleAspectRatio: new Rational(1, 1),
        profile: AV_PROFILE_H264_HIGH,
        level,
      },
    });
  }

  private async receivePackets(frameRate: number): Promise<void> {
    const encoder = this.encoder;
    if (encoder === undefined) return;
    for (;;) {
      const packet = await encoder.receive();
      if (packet === null || !isPacket(packet)) return;
      try {
        this.emitPacket(packet, frameRate);
      } finally {
        packet.free();
      }
    }
  }

  private async flush(): Promise<void> {
    const encoder = this.encoder;
    if (encoder === undefined || this.failed) return;
    try {
      for await (const packet of encoder.flushPackets()) {
        try {
          this.emitPacket(packet, this.stream?.frameRate ?? 30);
        } finally {
          packet.free();
        }
      }
    } catch (error) {
      this.log.warn({ err: errorMessage(error) }, 'clip encoder flush failed');
    }
  }

  private emitPacket(packet: Packet, frameRate: number): void {
    const bytes = packet.data;
    if (bytes === null) return;
    const data = Buffer.from(bytes);
    const keyFrame = containsIdr(data);
    if (keyFrame && this.stream === undefined) this.stream = this.describe(data, frameRate);
    const stream = this.stream;
    if (stream === undefined) return;
    const arrivedAt = this.arrivals.get(packet.pts) ?? Date.now();
    this.arrivals.delete(packet.pts);
    this.options.onPacket({ data, pts: packet.pts, dts: packet.dts, keyFrame, arrivedAt }, stream);
  }

  private describe(keyFrame: Buffer, frameRate: number): ClipStream {
    const { sps, pps } = parameterSets(keyFrame);
    if (sps === undefined || pps === undefined) throw new EndocapError(ErrorCodes.CLIP_ENCODE_FAILED, 'encoder wrote a key frame without SPS and PPS');
    const parsed = parseSps(sps);
    const rate = frameRateRational(frameRate);
    return {
      width: parsed.width,
      height: parsed.height,
      frameRate,
      timeBase: { num: rate.den, den: rate.num },
      sps: parsed,
      parameterSets: Buffer.concat([sps, pps]),
      encoder: this.encoderName,
      generation: this.generation,
    };
  }

  private fail(error: unknown): void {
    const failure =
      error instanceof EndocapError ? error : new EndocapError(ErrorCodes.CLIP_ENCODE_FAILED, `clip encoding failed: ${errorMessage(error)}`, { cause: error });
    this.failed = true;
    this.log.error({ code: failure.code, err: failure.message }, 'clip encoder stopped');
    for (const queued of this.queue.splice(0)) queued.frame.free();
    this.release();
    this.options.onFailed(failure);
  }

  private release(): void {
    this.releaseEncoder();
    this.filter?.close();
    this.filter = undefined;
    this.key = '';
    this.releaseHardware();
    this.stream = undefined;
    this.firstSeconds = undefined;
    this.lastPts = -1n;
    this.arrivals.clear();
  }

  private releaseEncoder(): void {
    this.encoder?.close();
    this.encoder = undefined;
  }

  private releaseHardware(): void {
    this.hardware?.dispose();
    this.hardware = undefined;
  }
}

/** Converts a frame rate to an exact rational: 30000/1001 for 29.97, n/1 for whole numbers. */
export function frameRateRational(frameRate: number): Rational {
  const rounded = Math.round(frameRate);
  if (Math.abs(frameRate - rounded) < 0.001) return new Rational(rounded, 1);
  const ntsc = Math.round((frameRate * 1001) / 1000);
  if (Math.abs(frameRate - (ntsc * 1000) / 1001) < 0.001) return new Rational(ntsc * 1000, 1001);
  return new Rational(Math.round(frameRate * 1000), 1000);
}

function isPacket(value: unknown): value is Packet {
  return typeof value === 'object' && value !== null && 'data' in value && 'free' in value;
}
