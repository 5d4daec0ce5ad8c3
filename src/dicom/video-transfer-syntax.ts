/**
 * Choice of the DICOM transfer syntax for an H.264 bit stream, from the facts
 * of its sequence parameter set (PS3.5 8.2.7 and 8.2.8). A stream that fits
 * none of them gets a reason instead of a UID, so that it is never labelled
 * with a syntax it does not meet.
 */

/** MPEG-4 AVC/H.264 High Profile / Level 4.1 (PS3.5 8.2.7). */
export const MPEG4_HIGH_PROFILE_LEVEL_41 = '1.2.840.10008.1.2.4.102';
/** MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1 (PS3.5 8.2.7, Table 8-4). */
export const MPEG4_BD_COMPATIBLE_HIGH_PROFILE_LEVEL_41 = '1.2.840.10008.1.2.4.103';
/** MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video (PS3.5 8.2.8). */
export const MPEG4_HIGH_PROFILE_LEVEL_42_2D = '1.2.840.10008.1.2.4.104';

/** Every H.264 transfer syntax a clip may carry, for receivers and tests. */
export const H264_TRANSFER_SYNTAXES: readonly string[] = [MPEG4_HIGH_PROFILE_LEVEL_41, MPEG4_BD_COMPATIBLE_HIGH_PROFILE_LEVEL_41, MPEG4_HIGH_PROFILE_LEVEL_42_2D];

/** Facts of a stream that decide its transfer syntax: SPS fields and the nominal frame rate. */
export interface H264StreamFacts {
  profileIdc: number;
  levelIdc: number;
  chromaFormatIdc: number;
  bitDepthLuma: number;
  bitDepthChroma: number;
  width: number;
  height: number;
  frameMbsOnly: boolean;
  /** Coded frame size in 16x16 macroblocks. */
  frameSizeInMbs: number;
  aspectRatioIdc?: number;
  fullRange: boolean;
  /** Frames per second. */
  frameRate: number;
}

export type TransferSyntaxChoice = { ok: true; transferSyntaxUid: string; name: string } | { ok: false; reason: string };

interface LevelLimits {
  transferSyntaxUid: string;
  name: string;
  /** Highest level_idc the syntax allows. */
  maxLevelIdc: number;
  /** MaxFS, MaxMBPS (H.264 Table A-1). */
  maxFrameSizeMbs: number;
  maxMbsPerSecond: number;
}

const LEVEL_41: LevelLimits = {
  transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_41,
  name: 'MPEG-4 AVC/H.264 High Profile / Level 4.1',
  maxLevelIdc: 41,
  maxFrameSizeMbs: 8_192,
  maxMbsPerSecond: 245_760,
};

const LEVEL_42: LevelLimits = {
  transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_42_2D,
  name: 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video',
  maxLevelIdc: 42,
  maxFrameSizeMbs: 8_704,
  maxMbsPerSecond: 522_240,
};

/**
 * Frame rates of the video types in PS3.5 Tables 8-5 and 8-7 (25, 30, 50 and
 * 60 Hz), with the 1000/1001 variants their notes allow.
 * NOTE: the standard lists these as video types; other rates within the
 * level's limits are read here as not allowed, the stricter reading.
 */
const ALLOWED_FRAME_RATES = [25, 30, 50, 60, 30_000 / 1_001, 60_000 / 1_001];

/** Relative tolerance of a measured frame rate against a nominal one. */
const FRAME_RATE_TOLERANCE = 0.005;

/**
 * Picks the transfer syntax for a stream: High Profile / Level 4.1 for level
 * 4.1 and below, High Profile / Level 4.2 For 2D Video for level 4.2. The
 * BD-compatible syntax is never picked, because every stream it allows is also a
 * High Profile / Level 4.1 stream.
 */
export function chooseH264TransferSyntax(facts: H264StreamFacts): TransferSyntaxChoice {
  const fail = (reason: string): TransferSyntaxChoice => ({ ok: false, reason });

  if (facts.profileIdc !== 100) return fail(`profile_idc ${facts.profileIdc} is not High Profile (100)`);
  if (facts.chromaFormatIdc !== 1 || facts.bitDepthLuma !== 8 || facts.bitDepthChroma !== 8) {
    return fail('samples are not 8-bit 4:2:0, which YBR_PARTIAL_420 requires');
  }
  if (facts.fullRange) return fail('samples are full range, but YBR_PARTIAL_420 is limited range');
  if (facts.aspectRatioIdc !== undefined && facts.aspectRatioIdc !== 1) {
    return fail(`pixels are not square (aspect_ratio_idc ${facts.aspectRatioIdc})`);
  }

  let limits: LevelLimits | undefined;
  if (facts.levelIdc <= LEVEL_41.maxLevelIdc) limits = LEVEL_41;
  else if (facts.levelIdc === LEVEL_42.maxLevelIdc) limits = LEVEL_42;
  if (limits === undefined) return fail(`level ${(facts.levelIdc / 10).toFixed(1)} is above 4.2, the highest level of the H.264 transfer syntaxes`);

  if (!Number.isFinite(facts.frameRate) || facts.frameRate <= 0) return fail('frame rate is unknown');
  if (!ALLOWED_FRAME_RATES.some((rate) => Math.abs(facts.frameRate - rate) <= rate * FRAME_RATE_TOLERANCE)) {
    return fail(`frame rate ${round(facts.frameRate)} is not 25, 29.97, 30, 50, 59.94 or 60 frames per second`);
  }

  // The largest side is limited too: sqrt(8 * MaxFS) macroblocks (H.264 A.3.1 f and g).
  const maxSideMbs = Math.floor(Math.sqrt(8 * limits.maxFrameSizeMbs));
  const widthMbs = Math.ceil(facts.width / 16);
  const heightMbs = Math.ceil(facts.height / 16);
  if (facts.frameSizeInMbs > limits.maxFrameSizeMbs || widthMbs > maxSideMbs || heightMbs > maxSideMbs) {
    return fail(`frame size ${facts.width}x${facts.height} exceeds ${limits.name}`);
  }
  if (facts.frameSizeInMbs * facts.frameRate > limits.maxMbsPerSecond * (1 + FRAME_RATE_TOLERANCE)) {
    return fail(`${facts.width}x${facts.height} at ${round(facts.frameRate)} frames per second exceeds ${limits.name}`);
  }
  return { ok: true, transferSyntaxUid: limits.transferSyntaxUid, name: limits.name };
}

/**
 * Returns the lowest H.264 level (as level_idc) an encoder should declare for
 * this frame size and rate, 41 or 42, or undefined when even level 4.2 is too small.
 */
export function requiredH264Level(width: number, height: number, frameRate: number): 41 | 42 | undefined {
  const frameSizeInMbs = Math.ceil(width / 16) * Math.ceil(height / 16);
  for (const limits of [LEVEL_41, LEVEL_42]) {
    const maxSideMbs = Math.floor(Math.sqrt(8 * limits.maxFrameSizeMbs));
    const fits =
      frameSizeInMbs <= limits.maxFrameSizeMbs &&
      Math.ceil(width / 16) <= maxSideMbs &&
      Math.ceil(height / 16) <= maxSideMbs &&
      frameSizeInMbs * frameRate <= limits.maxMbsPerSecond * (1 + FRAME_RATE_TOLERANCE);
    if (fits) return limits.maxLevelIdc as 41 | 42;
  }
  return undefined;
}

/**
 * Transfer syntaxes `chooseH264TransferSyntax` can return, in the order of its
 * level table: the syntaxes endocap writes clips in.
 */
export const WRITTEN_H264_TRANSFER_SYNTAXES: readonly string[] = [LEVEL_41.transferSyntaxUid, LEVEL_42.transferSyntaxUid];

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
