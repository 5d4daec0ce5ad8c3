import { formatTag } from './tags.js';

/**
 * A writer of small data sets of text and sequences: C-FIND identifiers, MPPS
 * messages and the exam attributes added to captured objects. Text is written
 * as UTF-8, so a data set with non-ASCII text needs SpecificCharacterSet
 * ISO_IR 192. Elements are JSON-serialisable, so MPPS messages can wait on disk.
 */

/** VRs the writer accepts: strings in the default repertoire or, for the text VRs, in UTF-8. */
export type StringVr = 'AE' | 'AS' | 'CS' | 'DA' | 'DS' | 'DT' | 'IS' | 'LO' | 'LT' | 'PN' | 'SH' | 'ST' | 'TM' | 'UC' | 'UI' | 'UR' | 'UT';

export type DatasetElement = { tag: number; vr: StringVr; value: string } | { tag: number; vr: 'SQ'; items: DatasetElement[][] };

const longLengthVrs = new Set(['SQ', 'UC', 'UR', 'UT']);

export interface EncodeOptions {
  /** True for Explicit VR Little Endian, false for Implicit VR Little Endian. */
  explicitVr: boolean;
}

/** Encodes elements, sorted by tag, with sequences and items of defined length. Throws on a tag given twice. */
export function encodeDataset(elements: readonly DatasetElement[], options: EncodeOptions): Buffer {
  const sorted = [...elements].sort((a, b) => a.tag - b.tag);
  const parts: Buffer[] = [];
  for (const [index, element] of sorted.entries()) {
    if (index > 0 && sorted[index - 1]?.tag === element.tag) throw new Error(`${formatTag(element.tag)} given twice`);
    parts.push(encodeElement(element, options));
  }
  return Buffer.concat(parts);
}

/** Encodes one element, header included. */
export function encodeElement(element: DatasetElement, options: EncodeOptions): Buffer {
  const value = element.vr === 'SQ' ? encodeItems(element.items, options) : encodeValue(element.vr, element.value);
  if (value.length > 0xfffffffe) throw new Error(`${formatTag(element.tag)} is too long`);
  const group = element.tag >>> 16;
  const number = element.tag & 0xffff;
  if (!options.explicitVr) {
    const header = Buffer.alloc(8);
    header.writeUInt16LE(group, 0);
    header.writeUInt16LE(number, 2);
    header.writeUInt32LE(value.length, 4);
    return Buffer.concat([header, value]);
  }
  if (longLengthVrs.has(element.vr)) {
    const header = Buffer.alloc(12);
    header.writeUInt16LE(group, 0);
    header.writeUInt16LE(number, 2);
    header.write(element.vr, 4, 'latin1');
    header.writeUInt32LE(value.length, 8);
    return Buffer.concat([header, value]);
  }
  if (value.length > 0xffff) throw new Error(`${formatTag(element.tag)} is longer than VR ${element.vr} allows`);
  const header = Buffer.alloc(8);
  header.writeUInt16LE(group, 0);
  header.writeUInt16LE(number, 2);
  header.write(element.vr, 4, 'latin1');
  header.writeUInt16LE(value.length, 6);
  return Buffer.concat([header, value]);
}

function encodeItems(items: readonly DatasetElement[][], options: EncodeOptions): Buffer {
  const parts: Buffer[] = [];
  for (const item of items) {
    const body = encodeDataset(item, options);
    const header = Buffer.alloc(8);
    header.writeUInt16LE(0xfffe, 0);
    header.writeUInt16LE(0xe000, 2);
    header.writeUInt32LE(body.length, 4);
    parts.push(header, body);
  }
  return Buffer.concat(parts);
}

/** UTF-8 bytes padded to an even length: UI with NUL, the other VRs with a space (PS3.5 6.2). */
function encodeValue(vr: StringVr, value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length % 2 === 0) return bytes;
  return Buffer.concat([bytes, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
}

/** True when any text value, in any item, is outside ASCII. */
export function hasNonAsciiText(elements: readonly DatasetElement[]): boolean {
  return elements.some((element) => (element.vr === 'SQ' ? element.items.some(hasNonAsciiText) : /[^\x00-\x7f]/.test(element.value)));
}
