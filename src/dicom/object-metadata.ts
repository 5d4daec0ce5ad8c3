import { EndocapError, ErrorCodes } from '../errors.js';
import type { ObjectMetadata } from '../spool/types.js';
import { isValidUid } from './uid.js';

const PREAMBLE_LENGTH = 128;
const MAGIC = 'DICM';

/** VRs whose explicit-VR header has 2 reserved bytes and a 32-bit length (PS3.5 7.1.2). */
const longLengthVrs = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

const metadataElements = {
  0x0002: 'sopClassUid',
  0x0003: 'sopInstanceUid',
  0x0010: 'transferSyntaxUid',
} as const;

/**
 * Reads the SOP Class, SOP Instance and Transfer Syntax UIDs from the File Meta
 * Information of a Part 10 file (PS3.10 7.1), without parsing the data set.
 * Throws DICOM_OBJECT_INVALID when the header is missing, truncated or lacks one of them.
 */
export function readObjectMetadata(part10: Buffer): ObjectMetadata {
  const fail = (problem: string): never => {
    throw new EndocapError(ErrorCodes.DICOM_OBJECT_INVALID, `invalid DICOM Part 10 file: ${problem}`);
  };

  if (part10.length < PREAMBLE_LENGTH + 4 || part10.toString('latin1', PREAMBLE_LENGTH, PREAMBLE_LENGTH + 4) !== MAGIC) {
    fail('no "DICM" prefix after the 128-byte preamble');
  }

  const found: Partial<Record<keyof ObjectMetadata, string>> = {};
  let offset = PREAMBLE_LENGTH + 4;
  // File Meta Information is always explicit VR little endian, and its elements are group 0002.
  while (offset + 8 <= part10.length && part10.readUInt16LE(offset) === 0x0002) {
    const element = part10.readUInt16LE(offset + 2);
    const vr = part10.toString('latin1', offset + 4, offset + 6);
    let length: number;
    let valueStart: number;
    if (longLengthVrs.has(vr)) {
      if (offset + 12 > part10.length) break;
      length = part10.readUInt32LE(offset + 8);
      valueStart = offset + 12;
    } else {
      length = part10.readUInt16LE(offset + 6);
      valueStart = offset + 8;
    }
    if (length === 0xffffffff || valueStart + length > part10.length) {
      fail(`element (0002,${element.toString(16).padStart(4, '0')}) runs past the end of the file`);
    }

    const key = metadataElements[element as keyof typeof metadataElements] as keyof ObjectMetadata | undefined;
    if (key !== undefined) {
      // UI values are padded to even length with a NUL byte; some writers pad with a space.
      found[key] = part10.toString('latin1', valueStart, valueStart + length).replace(/[\0 ]+$/, '');
    }
    offset = valueStart + length;
  }

  const metadata: ObjectMetadata = {
    sopClassUid: found.sopClassUid ?? fail('MediaStorageSOPClassUID (0002,0002) missing'),
    sopInstanceUid: found.sopInstanceUid ?? fail('MediaStorageSOPInstanceUID (0002,0003) missing'),
    transferSyntaxUid: found.transferSyntaxUid ?? fail('TransferSyntaxUID (0002,0010) missing'),
  };
  for (const [key, uid] of Object.entries(metadata)) {
    if (!isValidUid(uid)) fail(`${key} is not a valid UID`);
  }
  return metadata;
}
