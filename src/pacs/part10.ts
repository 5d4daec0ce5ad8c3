import { EndocapError, ErrorCodes } from '../errors.js';

/** File Meta Information and data set of a DICOM Part 10 file. */
export interface Part10File {
  /** Transfer Syntax UID (0002,0010) from the File Meta Information. */
  transferSyntaxUid: string;
  /** Media Storage SOP Class UID (0002,0002). */
  sopClassUid: string;
  /** Media Storage SOP Instance UID (0002,0003). */
  sopInstanceUid: string;
  /** The encoded data set after the File Meta Information: a view into the file's buffer. */
  dataset: Buffer;
}

const preambleLength = 128;
const metaStart = preambleLength + 4;

/** Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2). */
const longLengthVrs = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

function invalid(message: string): EndocapError {
  return new EndocapError(ErrorCodes.PACS_INVALID_OBJECT, `invalid Part 10 file: ${message}`);
}

function readUid(buffer: Buffer, start: number, length: number): string {
  // UI values are padded to even length with a NUL byte (PS3.5 6.2).
  return buffer.toString('latin1', start, start + length).replace(/[\0 ]+$/, '');
}

/**
 * Splits a Part 10 file (PS3.10 7.1) into its File Meta Information fields and
 * the encoded data set, without parsing the data set. The File Meta Information
 * is always Explicit VR Little Endian.
 */
export function splitPart10(buffer: Buffer): Part10File {
  if (buffer.length < metaStart || buffer.toString('latin1', preambleLength, metaStart) !== 'DICM') {
    throw invalid('no DICM prefix after the 128-byte preamble');
  }

  const fields = new Map<number, string>();
  let offset = metaStart;
  while (offset + 8 <= buffer.length && buffer.readUInt16LE(offset) === 0x0002) {
    const element = buffer.readUInt16LE(offset + 2);
    const vr = buffer.toString('latin1', offset + 4, offset + 6);
    let length: number;
    let valueStart: number;
    if (longLengthVrs.has(vr)) {
      if (offset + 12 > buffer.length) throw invalid('File Meta Information is truncated');
      length = buffer.readUInt32LE(offset + 8);
      valueStart = offset + 12;
    } else {
      length = buffer.readUInt16LE(offset + 6);
      valueStart = offset + 8;
    }
    if (valueStart + length > buffer.length) {
      throw invalid(`element (0002,${element.toString(16).padStart(4, '0')}) runs past the end of the file`);
    }
    if (vr === 'UI') fields.set(element, readUid(buffer, valueStart, length));
    offset = valueStart + length;
  }

  const transferSyntaxUid = fields.get(0x0010);
  const sopClassUid = fields.get(0x0002);
  const sopInstanceUid = fields.get(0x0003);
  if (!transferSyntaxUid) throw invalid('Transfer Syntax UID (0002,0010) is missing');
  if (!sopClassUid) throw invalid('Media Storage SOP Class UID (0002,0002) is missing');
  if (!sopInstanceUid) throw invalid('Media Storage SOP Instance UID (0002,0003) is missing');
  if (offset >= buffer.length) throw invalid('the data set is empty');

  return { transferSyntaxUid, sopClassUid, sopInstanceUid, dataset: buffer.subarray(offset) };
}
