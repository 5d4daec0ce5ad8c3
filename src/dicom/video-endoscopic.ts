import { EndocapError, ErrorCodes } from '../errors.js';
import type { DcmjsDataset } from './dcmjs.js';
import {
  commonElements,
  declareCharacterSet,
  element,
  fileMetaElements,
  writePart10,
  type EndoscopicCommonInput,
} from './endoscopic-common.js';
import { H264_TRANSFER_SYNTAXES } from './video-transfer-syntax.js';

/** Video Endoscopic Image Storage (PS3.4 Annex B.5). */
export const VIDEO_ENDOSCOPIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.1.1';

/**
 * Largest encapsulated stream in bytes. The standard allows a fragment of
 * almost 4 GiB; 2 GiB keeps each object within what common archives and
 * 32-bit signed size fields accept.
 */
export const MAX_VIDEO_OBJECT_BYTES = 2 * 1024 ** 3;

/** Frame Time (0018,1063), the attribute Frame Increment Pointer names for a constant frame rate. */
const FRAME_TIME_TAG = 0x00181063;

export interface VideoEndoscopicInput extends EndoscopicCommonInput {
  /** The whole bit stream in its container (MPEG-TS holding H.264), stored as one fragment. */
  stream: Buffer;
  /** An MPEG-4 AVC/H.264 transfer syntax that the stream meets. */
  transferSyntaxUid: string;
  numberOfFrames: number;
  /** Nominal frames per second. */
  frameRate: number;
}

/**
 * Builds a Video Endoscopic Image (PS3.3 A.32.5) as a DICOM Part 10 file. The
 * data set is written by dcmjs without Pixel Data, and the encapsulated Pixel
 * Data is appended here: an empty Basic Offset Table and the whole stream in
 * one fragment, as PS3.5 8.2.7 and 8.2.8 require. dcmjs itself would split the
 * stream into 20 KiB fragments and fill the offset table.
 * Throws DICOM_BUILD_FAILED when a value does not fit its VR or the stream is too large.
 */
export function buildVideoEndoscopicImage(input: VideoEndoscopicInput): Buffer {
  checkVideoInput(input);
  const dataset = commonElements(input, VIDEO_ENDOSCOPIC_IMAGE_STORAGE);
  const frameTimeMs = 1000 / input.frameRate;
  Object.assign(dataset, {
    // Cine
    '00181063': element('DS', formatDecimal(frameTimeMs)),
    '00180040': element('IS', Math.round(input.frameRate)),
    '00180072': element('DS', formatDecimal((input.numberOfFrames * frameTimeMs) / 1000)),
    // Multi-frame
    '00280008': element('IS', input.numberOfFrames),
    '00280009': { vr: 'AT', Value: [FRAME_TIME_TAG] },
    // VL Image
    '00282110': element('CS', '01'),
    '00282112': element('DS', compressionRatio(input)),
    '00282114': element('CS', 'ISO_14496_10'),
    // Image Pixel, with the values PS3.5 8.2.7 and 8.2.8 require for H.264.
    '00280002': element('US', 3),
    '00280004': element('CS', 'YBR_PARTIAL_420'),
    '00280006': element('US', 0),
    '00280010': element('US', input.height),
    '00280011': element('US', input.width),
    '00280100': element('US', 8),
    '00280101': element('US', 8),
    '00280102': element('US', 7),
    '00280103': element('US', 0),
  } satisfies DcmjsDataset);
  declareCharacterSet(dataset);

  const meta = fileMetaElements(VIDEO_ENDOSCOPIC_IMAGE_STORAGE, input.sopInstanceUid, input.transferSyntaxUid, input.station);
  const header = writePart10(meta, dataset);
  return Buffer.concat([header, ...encapsulatedPixelData(input.stream)]);
}

/**
 * Pixel Data (7FE0,0010) in Explicit VR Little Endian with undefined length:
 * an empty Basic Offset Table item, one fragment item and the sequence
 * delimiter (PS3.5 A.4). Fragments have an even length, so an odd stream gets one padding byte.
 */
function encapsulatedPixelData(stream: Buffer): Buffer[] {
  const padded = stream.length % 2 === 1;
  const start = Buffer.alloc(12 + 8 + 8);
  start.writeUInt16LE(0x7fe0, 0);
  start.writeUInt16LE(0x0010, 2);
  start.write('OB', 4, 'latin1');
  start.writeUInt32LE(0xffffffff, 8);
  writeItemHeader(start, 12, 0xe000, 0);
  writeItemHeader(start, 20, 0xe000, stream.length + (padded ? 1 : 0));
  const end = Buffer.alloc(8 + (padded ? 1 : 0));
  writeItemHeader(end, padded ? 1 : 0, 0xe0dd, 0);
  return [start, stream, end];
}

function writeItemHeader(buffer: Buffer, offset: number, element: number, length: number): void {
  buffer.writeUInt16LE(0xfffe, offset);
  buffer.writeUInt16LE(element, offset + 2);
  buffer.writeUInt32LE(length, offset + 4);
}

function checkVideoInput(input: VideoEndoscopicInput): void {
  const fail = (message: string): never => {
    throw new EndocapError(ErrorCodes.DICOM_BUILD_FAILED, message);
  };
  if (!H264_TRANSFER_SYNTAXES.includes(input.transferSyntaxUid)) fail(`invalid transfer syntax ${input.transferSyntaxUid}: expected an MPEG-4 AVC/H.264 transfer syntax`);
  if (!Number.isInteger(input.numberOfFrames) || input.numberOfFrames < 1) fail(`invalid NumberOfFrames ${input.numberOfFrames}: expected at least 1`);
  if (!Number.isFinite(input.frameRate) || input.frameRate <= 0) fail(`invalid frame rate ${input.frameRate}: expected a positive number`);
  if (input.stream.length === 0) fail('invalid pixel data: the video stream is empty');
  if (input.stream.length > MAX_VIDEO_OBJECT_BYTES) fail(`invalid pixel data: ${input.stream.length} bytes is more than ${MAX_VIDEO_OBJECT_BYTES}`);
}

/** DS value with at most 6 decimals and no trailing zeros, well within the 16 characters of VR DS. */
function formatDecimal(value: number): string {
  return String(Number(value.toFixed(6)));
}

/** LossyImageCompressionRatio: uncompressed 8-bit RGB size of every frame over the stream size, as DS. */
function compressionRatio(input: VideoEndoscopicInput): string {
  return ((input.width * input.height * 3 * input.numberOfFrames) / input.stream.length).toFixed(2).slice(0, 16);
}
