import './polyfill.js';
import { Encoder, FilterAPI } from 'node-av/api';
import {
  AV_CODEC_FLAG_QSCALE,
  AV_PIX_FMT_YUV422P,
  AVCOL_RANGE_JPEG,
  AVCOL_SPC_BT470BG,
  FF_ENCODER_MJPEG,
  FF_QP2LAMBDA,
  FF_THREAD_SLICE,
  type AVPixelFormat,
} from 'node-av/constants';
import { avGetPixFmtName, Rational, type Frame, type Packet } from 'node-av/lib';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ImageConfig } from '../profile/capture-schema.js';
import { imageFilterSteps } from './image-filter.js';

export interface EncodedStill {
  jpeg: Buffer;
  width: number;
  height: number;
}

export interface StillEncoderOptions {
  log: Logger;
  /** Crop and masks applied to every still; none when absent. */
  image?: ImageConfig;
}

/** Pixel formats whose samples are limited range (16-235) unless the frame is tagged full range. */
const LIMITED_RANGE_FORMATS = /^(yuv[0-9a]|yuyv|uyvy|yvyu|nv[0-9]|p0|p2|p4|y210|y212|vuy|xv|v30|ayuv|uyyvyy)/;

/**
 * Libjpeg scales the luminance table of ITU-T T.81 Annex K (mean 57.6) by
 * its scale percent. FFmpeg's mjpeg encoder writes the MPEG-1 intra matrix
 * (mean 33.0) times qscale / 8, as the DQT segments of its output show.
 * Equal means give qscale = 0.1396 * libjpeg scale percent, an approximation
 * because the two tables differ in shape.
 */
const QSCALE_PER_SCALE_PERCENT = (8 * 57.625) / (100 * 33.03125);

/**
 * Encodes decoded frames to baseline JPEG with the mjpeg encoder: full-range
 * 4:2:2 YCbCr with BT.601 coefficients, as JFIF readers expect, so that a
 * DICOM object can label it YBR_FULL_422. The filter and encoder contexts are
 * kept between stills and rebuilt only when the frame geometry or format
 * changes. Stills are encoded one at a time in call order.
 */
export class StillEncoder {
  private readonly log: Logger;
  private readonly image: ImageConfig | undefined;
  private filter: FilterAPI | undefined;
  private filterKey = '';
  private encoder: Encoder | undefined;
  private encoderKey = '';
  private queue: Promise<unknown> = Promise.resolve();
  /** The mjpeg encoder rejects a pts that does not increase, so stills are numbered. */
  private stillNumber = 0n;
  private closed = false;

  constructor(options: StillEncoderOptions) {
    this.log = options.log;
    this.image = options.image;
  }

  /**
   * Encodes `frame` at `jpegQuality` (libjpeg scale, 1 to 100). The frame is
   * borrowed: the caller keeps ownership and frees it after the promise
   * settles. The frame's pts and time base may be changed by the filter.
   */
  encode(frame: Frame, jpegQuality: number): Promise<EncodedStill> {
    const result = this.queue.then(() => this.encodeNow(frame, jpegQuality));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Frees the contexts after any still in progress has finished. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    this.releaseFilter();
    this.releaseEncoder();
  }

  private async encodeNow(frame: Frame, jpegQuality: number): Promise<EncodedStill> {
    if (this.closed) {
      throw new EndocapError(ErrorCodes.STILL_ENCODE_FAILED, 'still encoder is closed');
    }
    let converted: Frame | undefined;
    let packet: Packet | undefined;
    try {
      const filter = this.filterFor(frame);
      await filter.process(frame);
      converted = (await filter.receive()) ?? undefined;
      if (converted === undefined) {
        throw new EndocapError(ErrorCodes.STILL_ENCODE_FAILED, 'colour conversion returned no frame');
      }

      converted.pts = this.stillNumber;
      converted.timeBase = new Rational(1, 1);
      converted.duration = 1n;
      this.stillNumber += 1n;
      const encoder = await this.encoderFor(converted);
      converted.quality = qscaleFor(jpegQuality) * FF_QP2LAMBDA;
      await encoder.encode(converted);
      packet = (await encoder.receive()) ?? undefined;
      if (packet === undefined || packet.data === null) {
        throw new EndocapError(ErrorCodes.STILL_ENCODE_FAILED, 'JPEG encoder returned no packet');
      }
      return { jpeg: Buffer.from(packet.data), width: converted.width, height: converted.height };
    } catch (error) {
      // A failed context may be left mid-frame: start clean next time.
      this.releaseFilter();
      this.releaseEncoder();
      if (error instanceof EndocapError) throw error;
      throw new EndocapError(ErrorCodes.STILL_ENCODE_FAILED, `JPEG encoding failed: ${errorMessage(error)}`, { cause: error, retryable: true });
    } finally {
      converted?.free();
      packet?.free();
    }
  }

  private filterFor(frame: Frame): FilterAPI {
    const inputRange = isFullRange(frame) ? 'pc' : 'tv';
    const key = `${frame.width}x${frame.height}/${frame.format}/${inputRange}/${frame.colorSpace}`;
    if (this.filter !== undefined && this.filterKey === key) return this.filter;

    this.releaseFilter();
    // Masks and crop come before the range conversion, in a planar format of
    // the input's own range. drawbox (FFmpeg 8.1) paints black as 16 in
    // yuv422p and as 0 in yuvj422p, whatever range the frame is tagged with,
    // so the conversion then turns it into full-range 0 either way.
    const imageSteps = this.image === undefined ? [] : imageFilterSteps(this.image, frame.width, frame.height);
    const masking = imageSteps.length === 0 ? [] : [`format=${inputRange === 'pc' ? 'yuvj422p' : 'yuv422p'}`, ...imageSteps];
    // The range conversion is explicit: marking a limited-range frame as full
    // range without scaling its samples turns black into grey (16) and white
    // into 235. An unspecified input matrix is read as BT.601, swscale's default.
    const description = [
      ...masking,
      `scale=in_range=${inputRange}:out_range=pc:out_color_matrix=bt601:flags=bicubic+accurate_rnd+full_chroma_int`,
      'format=yuv422p',
    ].join(',');
    this.filter = FilterAPI.create(description, { threads: 1 });
    this.filterKey = key;
    this.log.debug({ width: frame.width, height: frame.height, pixelFormat: avGetPixFmtName(frame.format as AVPixelFormat), inputRange }, 'still filter created');
    return this.filter;
  }

  private async encoderFor(frame: Frame): Promise<Encoder> {
    const key = `${frame.width}x${frame.height}`;
    if (this.encoder !== undefined && this.encoderKey === key) return this.encoder;

    this.releaseEncoder();
    this.encoder = await Encoder.create(FF_ENCODER_MJPEG, {
      // Each frame carries a fixed quantiser (frame.quality), so the bit rate is unused.
      bitrate: 0,
      autoFormat: false,
      // Slice threads return the packet for the frame just sent, but frame
      // threads would hold it back until more frames or a flush arrive.
      threadType: FF_THREAD_SLICE,
      threadCount: 2,
      configure: (context) => {
        context.setFlags(AV_CODEC_FLAG_QSCALE);
        context.qMin = 1;
        context.qMax = 31;
        context.pixelFormat = AV_PIX_FMT_YUV422P;
        context.colorRange = AVCOL_RANGE_JPEG;
        context.colorSpace = AVCOL_SPC_BT470BG;
      },
    });
    this.encoderKey = key;
    return this.encoder;
  }

  private releaseFilter(): void {
    this.filter?.close();
    this.filter = undefined;
    this.filterKey = '';
  }

  private releaseEncoder(): void {
    this.encoder?.close();
    this.encoder = undefined;
    this.encoderKey = '';
  }
}

/** Maps a libjpeg quality (1-100) to the mjpeg encoder's qscale (1-31). */
export function qscaleFor(jpegQuality: number): number {
  const quality = Math.min(100, Math.max(1, jpegQuality));
  const scalePercent = quality < 50 ? 5000 / quality : 200 - 2 * quality;
  return Math.min(31, Math.max(1, Math.round(scalePercent * QSCALE_PER_SCALE_PERCENT)));
}

/** True when the frame's samples use the full 0-255 range (JPEG range) rather than 16-235. */
export function isFullRange(frame: Frame): boolean {
  if (frame.colorRange === AVCOL_RANGE_JPEG) return true;
  const name = avGetPixFmtName(frame.format as AVPixelFormat) ?? '';
  if (name.startsWith('yuvj')) return true;
  return !LIMITED_RANGE_FORMATS.test(name);
}
