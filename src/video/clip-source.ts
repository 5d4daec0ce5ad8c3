import './polyfill.js';
import { EventEmitter } from 'node:events';
import { AV_CODEC_ID_H264, AV_NOPTS_VALUE } from 'node-av/constants';
import { chooseH264TransferSyntax } from '../dicom/video-transfer-syntax.js';
import { EndocapError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ClipConfig, ImageConfig } from '../profile/capture-schema.js';
import { ClipEncoder, type ClipEncoderStatus } from './clip-encoder.js';
import type { ClipStream } from './clip-stream.js';
import { containsIdr, levelName, parameterSets, parseSps, profileName } from './h264-bitstream.js';
import { changesPixels } from './image-filter.js';
import { PacketRing, type EncodedPacket, type PacketRingStatus } from './packet-ring.js';
import type { FrameDecodedEvent, PacketReadEvent, VideoSource } from './video-source.js';

export interface ClipSourceEvents {
  /** A packet of the pre-record stream, already in the ring. */
  packet: [EncodedPacket, ClipStream];
  /** The stream stopped: loss of signal. Packets that follow belong to a new stream. */
  streamEnded: [{ reason: string }];
  /** Encoding stopped until the next loss of signal, with the reason. */
  failed: [EndocapError];
}

export interface ClipSourceOptions {
  video: Pick<VideoSource, 'on' | 'off' | 'status'>;
  config: ClipConfig;
  image: ImageConfig;
  log: Logger;
}

export interface ClipSourceStatus {
  mode: Mode;
  ring: PacketRingStatus;
  encoder: ClipEncoderStatus;
}

type Mode = 'waiting' | 'copy' | 'encode';

/** Packets without an SPS after which a copy attempt gives up and encodes instead. */
const MAX_PACKETS_WITHOUT_SPS = 300;

/** Time the ring keeps beyond the pre-record, for the encoder's delay between a frame and its packet, in ms. */
const RING_MARGIN_MS = 1_000;

/**
 * The continuous pre-record stream of clips. Packets are copied from the input
 * when it carries H.264 that fits a DICOM transfer syntax and the profile
 * neither crops nor masks. Otherwise every decoded frame is encoded. The mode
 * is decided again after each loss of signal. Packets go into a ring that
 * covers the pre-record and are emitted to clip recorders.
 */
export class ClipSource extends EventEmitter<ClipSourceEvents> {
  readonly ring: PacketRing;
  private readonly options: ClipSourceOptions;
  private readonly log: Logger;
  private readonly encoder: ClipEncoder;
  private mode: Mode = 'waiting';
  private copyStream: ClipStream | undefined;
  private generation = 1_000_000;
  private packetsWithoutSps = 0;
  private copyIndex = 0n;
  private stream: ClipStream | undefined;
  private lastFailure: EndocapError | undefined;
  private readonly onFrame = (event: FrameDecodedEvent): void => this.frameDecoded(event);
  private readonly onPacket = (event: PacketReadEvent): void => this.packetRead(event);
  private readonly onLost = (): void => this.signalLost();

  constructor(options: ClipSourceOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'clip-source' });
    this.ring = new PacketRing({ keepMs: options.config.preRecordSeconds * 1000 + RING_MARGIN_MS, maxBytes: options.config.maxRingBytes });
    this.encoder = new ClipEncoder({
      config: options.config.encoder,
      image: options.image,
      log: options.log,
      onPacket: (packet, stream) => this.accept(packet, stream),
      onFailed: (error) => {
        this.lastFailure = error;
        this.emitSafely(() => this.emit('failed', error));
      },
    });
  }

  start(): void {
    const { video } = this.options;
    video.on('frameDecoded', this.onFrame);
    video.on('packetRead', this.onPacket);
    video.on('signalLost', this.onLost);
    this.log.info({ preRecordSeconds: this.options.config.preRecordSeconds, maxRingBytes: this.options.config.maxRingBytes }, 'clip pre-record started');
  }

  /** Stops listening and flushes the encoder, so that packets of frames already taken still reach the recorders. */
  async stop(): Promise<void> {
    const { video } = this.options;
    video.off('frameDecoded', this.onFrame);
    video.off('packetRead', this.onPacket);
    video.off('signalLost', this.onLost);
    await this.encoder.close();
    this.ring.clear();
    this.log.info('clip pre-record stopped');
  }

  /** Returns the stream that the packets in the ring belong to. */
  currentStream(): ClipStream | undefined {
    return this.stream;
  }

  /** Returns why encoding stopped, until the next loss of signal; undefined while it works. */
  failure(): EndocapError | undefined {
    return this.lastFailure;
  }

  /** True while the video source delivers frames. */
  hasSignal(): boolean {
    return this.options.video.status().signal;
  }

  status(): ClipSourceStatus {
    return { mode: this.mode, ring: this.ring.status(), encoder: this.encoder.status() };
  }

  private frameDecoded(event: FrameDecodedEvent): void {
    if (this.mode === 'encode') this.encoder.submit(event.frame, event.arrivedAt, event.frameRate);
  }

  private packetRead(event: PacketReadEvent): void {
    if (this.mode === 'encode') return;
    if (this.mode === 'waiting') this.decideMode(event);
    if (this.mode === 'copy') this.copy(event);
  }

  /** Copies when the input's H.264 fits a transfer syntax as it is; decided at its first SPS. */
  private decideMode(event: PacketReadEvent): void {
    const { stream, packet } = event;
    const reason = this.copyRuledOut(event);
    if (reason !== undefined) {
      this.startEncoding(reason);
      return;
    }
    const data = packet.data;
    const { sps, pps } = data === null ? {} : parameterSets(data);
    if (data === null || sps === undefined || pps === undefined || !containsIdr(data)) {
      this.packetsWithoutSps += 1;
      if (this.packetsWithoutSps >= MAX_PACKETS_WITHOUT_SPS) this.startEncoding('no key frame with SPS and PPS in the H.264 input');
      return;
    }
    try {
      const parsed = parseSps(sps);
      const rate = stream.avgFrameRate.num > 0 ? stream.avgFrameRate : stream.rFrameRate;
      const frameRate = rate.den > 0 && rate.num > 0 ? rate.num / rate.den : (parsed.frameRate ?? 0);
      const choice = chooseH264TransferSyntax({ ...parsed, frameRate });
      if (!choice.ok) {
        this.startEncoding(`${profileName(parsed.profileIdc, parsed.constraintFlags)} level ${levelName(parsed.levelIdc, parsed.constraintFlags)} input does not fit a DICOM transfer syntax: ${choice.reason}`);
        return;
      }
      this.generation += 1;
      this.copyIndex = 0n;
      this.copyStream = {
        width: parsed.width,
        height: parsed.height,
        frameRate,
        timeBase: { num: stream.timeBase.num, den: stream.timeBase.den },
        sps: parsed,
        parameterSets: Buffer.concat([sps, pps]),
        encoder: 'source',
        generation: this.generation,
      };
      this.mode = 'copy';
      this.log.info({ width: parsed.width, height: parsed.height, frameRate, transferSyntax: choice.name }, 'clips copy H.264 from the input');
    } catch (error) {
      this.startEncoding(`H.264 input SPS unreadable: ${errorMessage(error)}`);
    }
  }

  private copyRuledOut(event: PacketReadEvent): string | undefined {
    const { stream } = event;
    if (stream.codecpar.codecId !== AV_CODEC_ID_H264) return 'input is not H.264';
    if (!this.options.config.passthrough) return 'clip.passthrough is off';
    if (changesPixels(this.options.image)) return 'image crop or masks change the pixels';
    // avcC framing (MP4, Matroska) has length prefixes instead of start codes.
    const extradata = stream.codecpar.extradata;
    if (extradata !== null && extradata.length > 0 && extradata[0] === 1) return 'H.264 input in avcC framing';
    return undefined;
  }

  private startEncoding(reason: string): void {
    this.mode = 'encode';
    this.log.info({ reason }, 'clips encode the decoded video');
  }

  private copy(event: PacketReadEvent): void {
    const stream = this.copyStream;
    const data = event.packet.data;
    if (stream === undefined || data === null) return;
    const copied = Buffer.from(data);
    const index = this.copyIndex;
    this.copyIndex += 1n;
    // Without timestamps, one frame per packet in the stream's time base.
    const frameTicks = BigInt(Math.max(1, Math.round(stream.timeBase.den / (stream.timeBase.num * (stream.frameRate || 30)))));
    const dts = event.packet.dts !== AV_NOPTS_VALUE ? event.packet.dts : index * frameTicks;
    const pts = event.packet.pts !== AV_NOPTS_VALUE ? event.packet.pts : dts;
    this.accept({ data: copied, pts, dts, keyFrame: containsIdr(copied), arrivedAt: event.arrivedAt }, stream);
  }

  private accept(packet: EncodedPacket, stream: ClipStream): void {
    // The ring contains one stream at a time, so a clip never starts in an older one.
    if (this.stream?.generation !== stream.generation) this.ring.clear();
    this.stream = stream;
    this.ring.push(packet);
    this.emitSafely(() => this.emit('packet', packet, stream));
  }

  private signalLost(): void {
    this.mode = 'waiting';
    this.copyStream = undefined;
    this.stream = undefined;
    this.lastFailure = undefined;
    this.packetsWithoutSps = 0;
    this.ring.clear();
    this.encoder.reset().catch((error: unknown) => this.log.warn({ err: errorMessage(error) }, 'clip encoder reset failed'));
    this.emitSafely(() => this.emit('streamEnded', { reason: 'signal lost' }));
  }

  private emitSafely(emit: () => void): void {
    try {
      emit();
    } catch (error) {
      this.log.error({ err: errorMessage(error) }, 'clip source listener failed');
    }
  }
}
