import { Tag, formatTag, vrOf } from './tags.js';

/**
 * A reader of encoded DICOM data sets in Explicit or Implicit VR Little
 * Endian (PS3.5 7.1) that keeps every value as its bytes. Text is decoded
 * later, with the character set of the data set, including text inside
 * sequence items (dcmjs 0.52 decodes sequence text as Latin-1 whatever the
 * data set declares).
 */

export interface RawElement {
  tag: number;
  vr: string;
  /** Value bytes; empty for sequences and for encapsulated pixel data. */
  value: Buffer;
  /** Items of a sequence. */
  items?: RawElement[][];
  /** Offset of the element's first byte (its tag) in the buffer read. */
  start: number;
  /** Offset just past the element's last byte. */
  end: number;
}

/** A data set that cannot be read; the message names the tag and the offset, never a value. */
export class DatasetFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetFormatError';
  }
}

export interface ReadOptions {
  /** True for Explicit VR Little Endian, false for Implicit VR Little Endian. */
  explicitVr: boolean;
  /** Deepest sequence nesting read; deeper data is a format error. */
  maxDepth?: number;
}

const UNDEFINED_LENGTH = 0xffffffff;
const longLengthVrs = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const DEFAULT_MAX_DEPTH = 8;

/** Reads every element of a data set. Throws DatasetFormatError for truncated or malformed data. */
export function readDataset(bytes: Buffer, options: ReadOptions): RawElement[] {
  const reader = new Reader(bytes, options.maxDepth ?? DEFAULT_MAX_DEPTH);
  return reader.readElements(0, bytes.length, options.explicitVr, 0, false).elements;
}

class Reader {
  constructor(
    private readonly bytes: Buffer,
    private readonly maxDepth: number,
  ) {}

  /**
   * Reads elements from `offset` to `end`, or, when `untilDelimiter`, up to an
   * Item Delimitation Item. Returns the elements and the offset after the last byte read.
   */
  readElements(offset: number, end: number, explicitVr: boolean, depth: number, untilDelimiter: boolean): { elements: RawElement[]; next: number } {
    const elements: RawElement[] = [];
    let position = offset;
    while (position < end) {
      const tag = this.tagAt(position);
      if (tag === Tag.ItemDelimitationItem) {
        if (!untilDelimiter) throw new DatasetFormatError(`unexpected item delimiter at offset ${position}`);
        return { elements, next: position + 8 };
      }
      const element = this.readElement(position, end, explicitVr, depth);
      elements.push(element);
      position = element.end;
    }
    if (untilDelimiter) throw new DatasetFormatError(`item of undefined length not ended at offset ${position}`);
    return { elements, next: position };
  }

  private readElement(start: number, limit: number, explicitVr: boolean, depth: number): RawElement {
    const tag = this.tagAt(start);
    let vr: string;
    let length: number;
    let valueStart: number;
    if (explicitVr && (tag >>> 16) !== 0xfffe) {
      this.need(start, 8, limit, tag);
      vr = this.bytes.toString('latin1', start + 4, start + 6);
      if (!/^[A-Z]{2}$/.test(vr)) throw new DatasetFormatError(`invalid VR for ${formatTag(tag)} at offset ${start}`);
      if (longLengthVrs.has(vr)) {
        this.need(start, 12, limit, tag);
        length = this.bytes.readUInt32LE(start + 8);
        valueStart = start + 12;
      } else {
        length = this.bytes.readUInt16LE(start + 6);
        valueStart = start + 8;
      }
    } else {
      this.need(start, 8, limit, tag);
      vr = vrOf(tag);
      length = this.bytes.readUInt32LE(start + 4);
      valueStart = start + 8;
    }

    if (length === UNDEFINED_LENGTH) {
      if (vr === 'SQ' || vr === 'UN') {
        // An UN of undefined length is a sequence encoded in Implicit VR (PS3.5 6.2.2).
        const itemsExplicit = vr === 'UN' ? false : explicitVr;
        const { items, next } = this.readItems(valueStart, limit, itemsExplicit, depth + 1, true);
        return { tag, vr: 'SQ', value: Buffer.alloc(0), items, start, end: next };
      }
      if (vr === 'OB' || vr === 'OW') {
        const next = this.skipFragments(valueStart, limit, tag);
        return { tag, vr, value: Buffer.alloc(0), start, end: next };
      }
      throw new DatasetFormatError(`undefined length for VR ${vr} in ${formatTag(tag)} at offset ${start}`);
    }

    const valueEnd = valueStart + length;
    if (valueEnd > limit) throw new DatasetFormatError(`${formatTag(tag)} at offset ${start} runs past the end of its data set`);
    if (vr === 'SQ') {
      const { items } = this.readItems(valueStart, valueEnd, explicitVr, depth + 1, false);
      return { tag, vr, value: Buffer.alloc(0), items, start, end: valueEnd };
    }
    return { tag, vr, value: this.bytes.subarray(valueStart, valueEnd), start, end: valueEnd };
  }

  private readItems(offset: number, end: number, explicitVr: boolean, depth: number, untilDelimiter: boolean): { items: RawElement[][]; next: number } {
    if (depth > this.maxDepth) throw new DatasetFormatError(`sequences nested deeper than ${this.maxDepth} levels at offset ${offset}`);
    const items: RawElement[][] = [];
    let position = offset;
    while (position < end) {
      this.need(position, 8, end, Tag.Item);
      const tag = this.tagAt(position);
      const length = this.bytes.readUInt32LE(position + 4);
      if (tag === Tag.SequenceDelimitationItem) {
        if (!untilDelimiter) throw new DatasetFormatError(`unexpected sequence delimiter at offset ${position}`);
        return { items, next: position + 8 };
      }
      if (tag !== Tag.Item) throw new DatasetFormatError(`expected an item in a sequence at offset ${position}, got ${formatTag(tag)}`);
      const itemStart = position + 8;
      if (length === UNDEFINED_LENGTH) {
        const { elements, next } = this.readElements(itemStart, end, explicitVr, depth, true);
        items.push(elements);
        position = next;
        continue;
      }
      const itemEnd = itemStart + length;
      if (itemEnd > end) throw new DatasetFormatError(`sequence item at offset ${position} runs past the end of its sequence`);
      items.push(this.readElements(itemStart, itemEnd, explicitVr, depth, false).elements);
      position = itemEnd;
    }
    if (untilDelimiter) throw new DatasetFormatError(`sequence of undefined length not ended at offset ${position}`);
    return { items, next: position };
  }

  /** Skips the fragments of encapsulated pixel data (PS3.5 A.4) up to its Sequence Delimitation Item. */
  private skipFragments(offset: number, limit: number, tag: number): number {
    let position = offset;
    while (position + 8 <= limit) {
      const itemTag = this.tagAt(position);
      const length = this.bytes.readUInt32LE(position + 4);
      if (itemTag === Tag.SequenceDelimitationItem) return position + 8;
      if (itemTag !== Tag.Item || length === UNDEFINED_LENGTH) break;
      position += 8 + length;
    }
    throw new DatasetFormatError(`encapsulated ${formatTag(tag)} not ended before offset ${limit}`);
  }

  private tagAt(offset: number): number {
    if (offset + 4 > this.bytes.length) throw new DatasetFormatError(`data set truncated at offset ${offset}`);
    return ((this.bytes.readUInt16LE(offset) << 16) | this.bytes.readUInt16LE(offset + 2)) >>> 0;
  }

  private need(offset: number, count: number, limit: number, tag: number): void {
    if (offset + count > limit || offset + count > this.bytes.length) {
      throw new DatasetFormatError(`${formatTag(tag)} at offset ${offset} is truncated`);
    }
  }
}

/** Returns the element with `tag` among `elements`, if present. */
export function findElement(elements: readonly RawElement[], tag: number): RawElement | undefined {
  return elements.find((element) => element.tag === tag);
}
