import { decoderFor, type Hl7CharacterSet } from './hl7-character-sets.js';
import { ErrorConditions, Hl7Error } from './hl7-errors.js';

/** Delimiters of a message, from MSH-1 and MSH-2. */
export interface Separators {
  field: string;
  component: string;
  repetition: string;
  /** Empty when MSH-2 declares no escape character. */
  escape: string;
  subcomponent: string;
  /** The truncation character of v2.7 and later; empty when MSH-2 has none. */
  truncation: string;
}

/** Defaults of MSH-1 and MSH-2, used for the ACK of a message whose header cannot be read. */
export const defaultSeparators: Separators = { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&', truncation: '' };

type Decode = (bytes: Buffer) => string;

interface MessageContext {
  separators: Separators;
  decode: Decode;
}

/** One segment; fields are numbered as in the standard, so `value(3)` of PID is PID-3. */
export class Hl7Segment {
  readonly name: string;
  private readonly fields: readonly string[];
  private readonly context: MessageContext;

  constructor(name: string, fields: readonly string[], context: MessageContext) {
    this.name = name;
    this.fields = fields;
    this.context = context;
  }

  /** Raw text of a field, escapes and delimiters included; empty when absent. */
  raw(field: number): string {
    return this.fields[field] ?? '';
  }

  /** True when the field has any content, the HL7 null `""` included. */
  present(field: number): boolean {
    return this.raw(field) !== '';
  }

  /**
   * Repetitions of a field, each a list of components, each a list of
   * unescaped subcomponents. MSH-1 and MSH-2 are returned whole.
   */
  repetitions(field: number): string[][][] {
    const raw = this.raw(field);
    if (raw === '') return [];
    const { separators } = this.context;
    if (this.name === 'MSH' && field <= 2) return [[[raw]]];
    return raw.split(separators.repetition).map((repetition) =>
      repetition.split(separators.component).map((component) => (separators.subcomponent === '' ? [component] : component.split(separators.subcomponent)).map((part) => this.unescape(part))),
    );
  }

  /**
   * Unescaped value at a position, all numbers 1-based; empty when absent.
   * The HL7 null `""` reads as empty.
   */
  value(field: number, component = 1, subcomponent = 1, repetition = 1): string {
    const text = this.repetitions(field)[repetition - 1]?.[component - 1]?.[subcomponent - 1] ?? '';
    return text === '""' ? '' : text;
  }

  /** Replaces escape sequences with the characters they represent. */
  private unescape(text: string): string {
    const { separators } = this.context;
    const escape = separators.escape;
    if (escape === '' || !text.includes(escape)) return text;
    let result = '';
    let position = 0;
    while (position < text.length) {
      const start = text.indexOf(escape, position);
      const end = start === -1 ? -1 : text.indexOf(escape, start + 1);
      if (start === -1 || end === -1) {
        result += text.slice(position);
        break;
      }
      result += text.slice(position, start);
      result += this.escapeSequence(text.slice(start + 1, end), text.slice(start, end + 1));
      position = end + 1;
    }
    return result;
  }

  private escapeSequence(sequence: string, whole: string): string {
    const { separators, decode } = this.context;
    switch (sequence) {
      case 'F':
        return separators.field;
      case 'S':
        return separators.component;
      case 'T':
        return separators.subcomponent;
      case 'R':
        return separators.repetition;
      case 'E':
        return separators.escape;
      case 'P':
        return separators.truncation;
      // Highlighting on and off carries no character.
      case 'H':
      case 'N':
        return '';
    }
    const hex = /^X((?:[0-9A-Fa-f]{2})+)$/.exec(sequence);
    if (hex?.[1] !== undefined) return decode(Buffer.from(hex[1], 'hex'));
    // Formatted text commands: line breaks become LF, indentation a space, the rest nothing.
    if (sequence === '.br' || /^\.sp ?\d*$/.test(sequence)) return '\n';
    if (/^\.(in|ti|sk) ?[+-]?\d*$/.test(sequence)) return ' ';
    if (/^\.(fi|nf|ce)$/.test(sequence)) return '';
    // A locally defined escape (\Z...\) has no meaning here.
    if (sequence.startsWith('Z')) return '';
    if (/^[CM][0-9A-Fa-f]+$/.test(sequence)) {
      throw new Hl7Error('AE', ErrorConditions.dataTypeError, `segment ${this.name}: character set switching escapes (\\C and \\M sequences) are not supported; send the message in one character set named in MSH-18`, {
        segment: this.name,
      });
    }
    // Anything else is not an escape sequence and stays as it was written.
    return whole;
  }
}

/** A parsed message: its delimiters and its segments in order. */
export class Hl7Message {
  readonly separators: Separators;
  readonly segments: readonly Hl7Segment[];

  constructor(separators: Separators, segments: readonly Hl7Segment[]) {
    this.separators = separators;
    this.segments = segments;
  }

  get header(): Hl7Segment {
    const header = this.segments[0];
    if (header?.name !== 'MSH') throw new Error('message without MSH segment');
    return header;
  }

  /** Returns the first segment with this name, or undefined. */
  segment(name: string): Hl7Segment | undefined {
    return this.segments.find((segment) => segment.name === name);
  }
}

/** MSH fields the listener needs before the rest of a message is decoded; all ASCII by the standard. */
export interface MessageHeader {
  separators: Separators;
  /** MSH-3 to MSH-6: sending application and facility, receiving application and facility, raw. */
  sendingApplication: string;
  sendingFacility: string;
  /** MSH-10. */
  controlId: string;
  /** MSH-11 and MSH-12, raw, for the ACK. */
  processingId: string;
  versionId: string;
  /** First repetition of MSH-18; empty when absent. */
  characterSet: string;
}

/**
 * Reads MSH-1 and MSH-2 and the header fields from the first segment. The
 * header is read as Latin-1 bytes, because its fields are ASCII whatever
 * MSH-18 declares. Throws an AR Hl7Error when the payload does not start with a
 * valid MSH segment.
 */
export function readHeader(payload: Buffer): MessageHeader {
  const start = payload[0] === 0xef && payload[1] === 0xbb && payload[2] === 0xbf ? 3 : 0;
  const firstLine = payload.subarray(start, start + 4_096).toString('latin1').split(/[\r\n]/)[0] ?? '';
  if (!firstLine.startsWith('MSH') || firstLine.length < 8) {
    throw new Hl7Error('AR', ErrorConditions.segmentSequenceError, 'frame does not start with an MSH segment; only HL7 v2 messages are accepted', { segment: 'MSH' });
  }
  const field = firstLine.charAt(3);
  const encodingEnd = firstLine.indexOf(field, 4);
  const encoding = firstLine.slice(4, encodingEnd === -1 ? undefined : encodingEnd);
  const delimiters = [field, ...encoding];
  const valid = encoding.length >= 2 && encoding.length <= 5 && delimiters.every((character) => /[^\w\s]/.test(character)) && new Set(delimiters).size === delimiters.length;
  if (!valid) {
    throw new Hl7Error('AR', ErrorConditions.dataTypeError, 'MSH-1 and MSH-2 must declare distinct delimiter characters, such as |^~\\&', { segment: 'MSH', field: 2 });
  }
  const separators: Separators = {
    field,
    component: encoding.charAt(0),
    repetition: encoding.charAt(1),
    escape: encoding.charAt(2),
    subcomponent: encoding.charAt(3),
    truncation: encoding.charAt(4),
  };
  // parts[n - 1] is MSH-n for n >= 2, because MSH-1 is the separator itself.
  const parts = firstLine.split(field);
  const msh = (n: number): string => parts[n - 1] ?? '';
  const first = (text: string): string => text.split(separators.repetition)[0]?.split(separators.component)[0] ?? '';
  return {
    separators,
    sendingApplication: msh(3),
    sendingFacility: msh(4),
    controlId: msh(10),
    processingId: msh(11),
    versionId: msh(12),
    characterSet: first(msh(18)),
  };
}

/**
 * Parses a whole message: the bytes are decoded with the character set of
 * MSH-18 (or `fallback` when it is empty), then split into segments at CR
 * (LF and CRLF are accepted too), fields, repetitions, components and
 * subcomponents. Throws Hl7Error.
 */
export function parseMessage(payload: Buffer, fallback: Hl7CharacterSet): { header: MessageHeader; message: Hl7Message } {
  const header = readHeader(payload);
  const decode = decoderFor(header.characterSet, fallback);
  const text = decode(payload).replace(/^\uFEFF/, '');
  const context: MessageContext = { separators: header.separators, decode };
  const segments: Hl7Segment[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line.trim() === '') continue;
    const name = line.slice(0, 3);
    if (!/^[A-Z][A-Z0-9]{2}$/.test(name) || (line.length > 3 && line.charAt(3) !== header.separators.field)) {
      throw new Hl7Error('AE', ErrorConditions.segmentSequenceError, `segment ${segments.length + 1} does not start with a segment name and the field separator`, { segment: 'MSH' });
    }
    const parts = line.split(header.separators.field);
    const fields = name === 'MSH' && segments.length === 0 ? ['MSH', header.separators.field, ...parts.slice(1)] : parts;
    segments.push(new Hl7Segment(name, fields, context));
  }
  return { header, message: new Hl7Message(header.separators, segments) };
}
