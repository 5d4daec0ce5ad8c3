import { EndocapError, ErrorCodes } from '../errors.js';
import { exactArrayBuffer, type DcmjsDataset } from './dcmjs.js';
import {
  commonElements,
  declareCharacterSet,
  element,
  fileMetaElements,
  writePart10,
  type EndoscopicCommonInput,
} from './endoscopic-common.js';

export { readObjectMetadata } from './object-metadata.js';
export {
  IMPLEMENTATION_CLASS_UID,
  MANUFACTURER,
  type AnatomicRegion,
  type VlEndoscopicSeries,
  type VlEndoscopicStation,
  type VlEndoscopicStudy,
} from './endoscopic-common.js';

/** VL Endoscopic Image Storage (PS3.4 Annex B.5). */
export const VL_ENDOSCOPIC_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.77.1.1';

/** JPEG Baseline (Process 1), lossy 8-bit (PS3.5 10.6). */
export const JPEG_BASELINE_TRANSFER_SYNTAX = '1.2.840.10008.1.2.4.50';

export interface VlEndoscopicInput extends EndoscopicCommonInput {
  /** One baseline JPEG (SOF0) with 3 components in YCbCr, 4:2:2 or 4:2:0 sampled. */
  jpeg: Buffer;
}

/**
 * Builds a VL Endoscopic Image as a DICOM Part 10 file holding the JPEG as it is.
 * Throws DICOM_BUILD_FAILED when a value does not fit its VR.
 *
 * Modules written (PS3.3 A.32.4): Patient, General Study, General Series, General
 * Equipment, General Image, Image Pixel, Acquisition Context (empty), VL Image and
 * SOP Common. See `commonElements` for Laterality.
 */
export function buildVlEndoscopicImage(input: VlEndoscopicInput): Buffer {
  if (!isBaselineJpeg(input.jpeg)) {
    throw new EndocapError(ErrorCodes.DICOM_BUILD_FAILED, 'invalid pixel data: expected a baseline JPEG (SOI then SOF0)');
  }
  const dataset = commonElements(input, VL_ENDOSCOPIC_IMAGE_STORAGE);
  Object.assign(dataset, {
    // VL Image
    '00282110': element('CS', '01'),
    '00282112': element('DS', compressionRatio(input)),
    '00282114': element('CS', 'ISO_10918_1'),
    // Image Pixel
    '00280002': element('US', 3),
    '00280004': element('CS', 'YBR_FULL_422'),
    '00280006': element('US', 0),
    '00280010': element('US', input.height),
    '00280011': element('US', input.width),
    '00280100': element('US', 8),
    '00280101': element('US', 8),
    '00280102': element('US', 7),
    '00280103': element('US', 0),
    '7FE00010': { vr: 'OB', Value: [exactArrayBuffer(input.jpeg)] },
  } satisfies DcmjsDataset);
  declareCharacterSet(dataset);

  const meta = fileMetaElements(VL_ENDOSCOPIC_IMAGE_STORAGE, input.sopInstanceUid, JPEG_BASELINE_TRANSFER_SYNTAX, input.station);
  return writePart10(meta, dataset);
}

/** True when the data starts with SOI and its first frame header is SOF0 (baseline DCT). */
function isBaselineJpeg(jpeg: Buffer): boolean {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return false;
  let offset = 2;
  while (offset + 4 <= jpeg.length) {
    if (jpeg[offset] !== 0xff) return false;
    const marker = jpeg[offset + 1] ?? 0;
    if (marker === 0xc0) return true;
    // Any other SOFn means a process other than baseline; SOS before SOF is malformed.
    if ((marker >= 0xc1 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) || marker === 0xda) return false;
    offset += 2 + jpeg.readUInt16BE(offset + 2);
  }
  return false;
}

/** LossyImageCompressionRatio: uncompressed 8-bit RGB size over JPEG size, as DS. */
function compressionRatio(input: VlEndoscopicInput): string {
  return (input.width * input.height * 3 / input.jpeg.length).toFixed(2).slice(0, 16);
}
