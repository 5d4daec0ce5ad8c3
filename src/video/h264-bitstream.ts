/**
 * Reading of H.264 Annex B byte streams (ITU-T H.264, Annex B and 7.3.2.1):
 * NAL unit boundaries, picture types and the sequence parameter set fields
 * that decide which DICOM transfer syntax a stream fits.
 */

/** NAL unit types used here (H.264 Table 7-1). */
export const NalType = {
  NON_IDR_SLICE: 1,
  IDR_SLICE: 5,
  SPS: 7,
  PPS: 8,
  ACCESS_UNIT_DELIMITER: 9,
} as const;

/** Fields of a sequence parameter set. */
export interface SequenceParameterSet {
  /** 66 Baseline, 77 Main, 100 High, and so on (H.264 Annex A). */
  profileIdc: number;
  /** constraint_set0_flag to constraint_set5_flag, set0 in the most significant of the 6 bits. */
  constraintFlags: number;
  /** Level times 10: 41 is level 4.1. Level 1b is 11 with constraint_set3_flag. */
  levelIdc: number;
  /** 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4. */
  chromaFormatIdc: number;
  bitDepthLuma: number;
  bitDepthChroma: number;
  /** Picture width and height in pixels after the frame cropping rectangle. */
  width: number;
  height: number;
  /** False for interlaced coding (field or MBAFF pictures). */
  frameMbsOnly: boolean;
  /** Size of a coded frame in 16x16 macroblocks. */
  frameSizeInMbs: number;
  /** aspect_ratio_idc when the VUI carries it; 1 means square pixels. */
  aspectRatioIdc?: number;
  /** video_full_range_flag of the VUI; absent means limited range. */
  fullRange: boolean;
  /** Frames per second from the VUI timing information, when present. */
  frameRate?: number;
}

/** Returns the NAL units of an Annex B byte stream, without start codes. */
export function splitNalUnits(data: Uint8Array): Buffer[] {
  const buffer = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const starts: Array<{ codeStart: number; payloadStart: number }> = [];
  for (let index = 0; index + 2 < buffer.length; index += 1) {
    if (buffer[index] !== 0 || buffer[index + 1] !== 0) continue;
    if (buffer[index + 2] === 1) {
      const codeStart = index > 0 && buffer[index - 1] === 0 ? index - 1 : index;
      starts.push({ codeStart, payloadStart: index + 3 });
      index += 2;
    }
  }
  const units: Buffer[] = [];
  for (let index = 0; index < starts.length; index += 1) {
    const start = starts[index];
    if (start === undefined) continue;
    const end = starts[index + 1]?.codeStart ?? buffer.length;
    if (end > start.payloadStart) units.push(buffer.subarray(start.payloadStart, end));
  }
  return units;
}

export function nalUnitType(nal: Uint8Array): number {
  return (nal[0] ?? 0) & 0x1f;
}

/**
 * True when the access unit contains an IDR picture, where decoding can start.
 * Every slice of an access unit has the same type, so the scan stops at the
 * first slice, near the start: the slice data, most of the bytes, is never read.
 */
export function containsIdr(data: Uint8Array): boolean {
  for (let index = 0; index + 3 < data.length; index += 1) {
    if (data[index] !== 0 || data[index + 1] !== 0 || data[index + 2] !== 1) continue;
    const type = (data[index + 3] ?? 0) & 0x1f;
    if (type === NalType.IDR_SLICE) return true;
    if (type >= NalType.NON_IDR_SLICE && type < NalType.IDR_SLICE) return false;
    index += 2;
  }
  return false;
}

/** True when the access unit carries both an SPS and a PPS. */
export function containsParameterSets(data: Uint8Array): boolean {
  const types = new Set(splitNalUnits(data).map(nalUnitType));
  return types.has(NalType.SPS) && types.has(NalType.PPS);
}

/** Returns the last SPS and PPS NAL units in an access unit, each with its start code. */
export function parameterSets(data: Uint8Array): { sps?: Buffer; pps?: Buffer } {
  const found: { sps?: Buffer; pps?: Buffer } = {};
  for (const nal of splitNalUnits(data)) {
    const type = nalUnitType(nal);
    if (type === NalType.SPS) found.sps = withStartCode(nal);
    if (type === NalType.PPS) found.pps = withStartCode(nal);
  }
  return found;
}

function withStartCode(nal: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0, 0, 0, 1]), nal]);
}

/** Reads bits and Exp-Golomb codes from a NAL unit payload with emulation prevention bytes removed. */
class BitReader {
  private position = 0;

  constructor(private readonly bytes: Uint8Array) {}

  bit(): number {
    const byte = this.bytes[this.position >> 3];
    if (byte === undefined) throw new RangeError('H.264 parameter set ends early');
    const value = (byte >> (7 - (this.position & 7))) & 1;
    this.position += 1;
    return value;
  }

  bits(count: number): number {
    let value = 0;
    for (let index = 0; index < count; index += 1) value = value * 2 + this.bit();
    return value;
  }

  unsignedExpGolomb(): number {
    let leadingZeros = 0;
    while (this.bit() === 0) {
      leadingZeros += 1;
      if (leadingZeros > 31) throw new RangeError('invalid Exp-Golomb code in an H.264 parameter set');
    }
    return 2 ** leadingZeros - 1 + this.bits(leadingZeros);
  }

  signedExpGolomb(): number {
    const code = this.unsignedExpGolomb();
    return code % 2 === 1 ? (code + 1) / 2 : -(code / 2);
  }
}

/** Removes emulation prevention bytes (0x000003 becomes 0x0000, H.264 7.4.1). */
function rawPayload(nal: Uint8Array): Uint8Array {
  const output: number[] = [];
  let zeros = 0;
  for (let index = 1; index < nal.length; index += 1) {
    const byte = nal[index] ?? 0;
    if (zeros >= 2 && byte === 3) {
      zeros = 0;
      continue;
    }
    output.push(byte);
    zeros = byte === 0 ? zeros + 1 : 0;
  }
  return Uint8Array.from(output);
}

/** Profiles whose SPS carries chroma format, bit depths and scaling matrices (H.264 7.3.2.1.1). */
const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

/**
 * Parses a sequence parameter set NAL unit (with or without its start code).
 * Throws RangeError when it is truncated or malformed.
 */
export function parseSps(nal: Uint8Array): SequenceParameterSet {
  const units = splitNalUnits(nal);
  const unit = units.length > 0 ? units[0] : nal;
  if (unit === undefined || nalUnitType(unit) !== NalType.SPS) throw new RangeError('not an H.264 sequence parameter set');
  const reader = new BitReader(rawPayload(unit));

  const profileIdc = reader.bits(8);
  const constraintFlags = reader.bits(6);
  reader.bits(2);
  const levelIdc = reader.bits(8);
  reader.unsignedExpGolomb();

  let chromaFormatIdc = 1;
  let bitDepthLuma = 8;
  let bitDepthChroma = 8;
  if (HIGH_PROFILES.has(profileIdc)) {
    chromaFormatIdc = reader.unsignedExpGolomb();
    if (chromaFormatIdc === 3) reader.bit();
    bitDepthLuma = reader.unsignedExpGolomb() + 8;
    bitDepthChroma = reader.unsignedExpGolomb() + 8;
    reader.bit();
    if (reader.bit() === 1) {
      const lists = chromaFormatIdc === 3 ? 12 : 8;
      for (let index = 0; index < lists; index += 1) {
        if (reader.bit() === 1) skipScalingList(reader, index < 6 ? 16 : 64);
      }
    }
  }

  reader.unsignedExpGolomb();
  const picOrderCountType = reader.unsignedExpGolomb();
  if (picOrderCountType === 0) {
    reader.unsignedExpGolomb();
  } else if (picOrderCountType === 1) {
    reader.bit();
    reader.signedExpGolomb();
    reader.signedExpGolomb();
    const cycle = reader.unsignedExpGolomb();
    for (let index = 0; index < cycle; index += 1) reader.signedExpGolomb();
  }
  reader.unsignedExpGolomb();
  reader.bit();
  const widthInMbs = reader.unsignedExpGolomb() + 1;
  const heightInMapUnits = reader.unsignedExpGolomb() + 1;
  const frameMbsOnly = reader.bit() === 1;
  if (!frameMbsOnly) reader.bit();
  reader.bit();

  const frameHeightInMbs = (frameMbsOnly ? 1 : 2) * heightInMapUnits;
  let width = widthInMbs * 16;
  let height = frameHeightInMbs * 16;
  if (reader.bit() === 1) {
    const [left, right, top, bottom] = [reader.unsignedExpGolomb(), reader.unsignedExpGolomb(), reader.unsignedExpGolomb(), reader.unsignedExpGolomb()];
    const cropUnitX = chromaFormatIdc === 0 || chromaFormatIdc === 3 ? 1 : 2;
    const cropUnitY = (chromaFormatIdc === 1 ? 2 : 1) * (frameMbsOnly ? 1 : 2);
    width -= cropUnitX * (left + right);
    height -= cropUnitY * (top + bottom);
  }

  const sps: SequenceParameterSet = {
    profileIdc,
    constraintFlags,
    levelIdc,
    chromaFormatIdc,
    bitDepthLuma,
    bitDepthChroma,
    width,
    height,
    frameMbsOnly,
    frameSizeInMbs: widthInMbs * frameHeightInMbs,
    fullRange: false,
  };
  if (reader.bit() === 1) readVui(reader, sps);
  return sps;
}

function skipScalingList(reader: BitReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let index = 0; index < size; index += 1) {
    if (next !== 0) next = (last + reader.signedExpGolomb() + 256) % 256;
    last = next === 0 ? last : next;
  }
}

/** Reads the VUI fields up to the timing information (H.264 E.1.1). */
function readVui(reader: BitReader, sps: SequenceParameterSet): void {
  if (reader.bit() === 1) {
    sps.aspectRatioIdc = reader.bits(8);
    // Extended_SAR carries the ratio explicitly.
    if (sps.aspectRatioIdc === 255) reader.bits(32);
  }
  if (reader.bit() === 1) reader.bit();
  if (reader.bit() === 1) {
    reader.bits(3);
    sps.fullRange = reader.bit() === 1;
    if (reader.bit() === 1) reader.bits(24);
  }
  if (reader.bit() === 1) {
    reader.unsignedExpGolomb();
    reader.unsignedExpGolomb();
  }
  if (reader.bit() === 1) {
    const unitsInTick = reader.bits(32);
    const timeScale = reader.bits(32);
    // A frame lasts two ticks of the VUI clock (H.264 E.2.1, Equation C-1 with field pairs).
    if (unitsInTick > 0) sps.frameRate = timeScale / (2 * unitsInTick);
  }
}

/** Human-readable profile name for messages, such as "High (100)". */
export function profileName(profileIdc: number, constraintFlags = 0): string {
  const names: Record<number, string> = { 66: 'Baseline', 77: 'Main', 88: 'Extended', 100: 'High', 110: 'High 10', 122: 'High 4:2:2', 244: 'High 4:4:4 Predictive' };
  // constraint_set1_flag on Baseline marks Constrained Baseline.
  const constrained = profileIdc === 66 && (constraintFlags & 0b010000) !== 0 ? 'Constrained ' : '';
  return `${constrained}${names[profileIdc] ?? 'unknown'} (${profileIdc})`;
}

/** Level for messages, such as "4.1" or "1b". */
export function levelName(levelIdc: number, constraintFlags = 0): string {
  if (levelIdc === 11 && (constraintFlags & 0b000100) !== 0) return '1b';
  return (levelIdc / 10).toFixed(1);
}
