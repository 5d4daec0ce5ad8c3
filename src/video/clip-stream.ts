import type { SequenceParameterSet } from './h264-bitstream.js';

/** The H.264 stream that pre-record packets belong to. */
export interface ClipStream {
  /** Picture size after cropping, from the SPS. */
  width: number;
  height: number;
  /** Nominal frames per second. */
  frameRate: number;
  /** Unit of the packets' pts and dts. */
  timeBase: { num: number; den: number };
  sps: SequenceParameterSet;
  /** SPS and PPS NAL units with start codes, for a clip whose first key frame lacks them. */
  parameterSets: Buffer;
  /** Encoder that made the stream, such as libx264, or `source` for H.264 copied from the input. */
  encoder: string;
  /**
   * Changes whenever a new stream starts (new encoder, reopened source), so
   * that a clip never joins packets of two streams in one object.
   */
  generation: number;
}
