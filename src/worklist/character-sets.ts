/**
 * Decoding of DICOM text by its Specific Character Set (PS3.3 C.12.1.1.2,
 * PS3.5 6.1). Single-byte sets and UTF-8 use Node's TextDecoder (WHATWG
 * encodings, ICU). ISO 2022 code extensions are parsed here: each escape
 * sequence selects a character set for G0 or G1, and each run of bytes is
 * decoded in the set currently designated for its half of the code table.
 */

/** Problem found while decoding; the text itself is never part of a problem. */
export type CharsetProblem =
  /** The declared set is not one this decoder supports; Latin-1 was used. */
  | 'unknown-character-set'
  /** Bytes are invalid in the declared set (such as Latin-1 bytes declared as UTF-8); Latin-1 was used. */
  | 'invalid-bytes'
  /** No set was declared but the value has bytes above 0x7F. */
  | 'undeclared-non-ascii'
  /** An escape sequence names a set that was not declared or is unknown. */
  | 'unknown-escape-sequence';

type Decode = (bytes: Uint8Array) => string;

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function webDecoder(label: string): Decode {
  const decoder = new TextDecoder(label);
  return (bytes) => decoder.decode(bytes);
}

/** Defined Terms of single-byte sets without code extensions, and the WHATWG label of each. */
const singleByteLabels: Record<string, string> = {
  'ISO_IR 100': 'iso-8859-1',
  'ISO_IR 101': 'iso-8859-2',
  'ISO_IR 109': 'iso-8859-3',
  'ISO_IR 110': 'iso-8859-4',
  'ISO_IR 144': 'iso-8859-5',
  'ISO_IR 127': 'iso-8859-6',
  'ISO_IR 126': 'iso-8859-7',
  'ISO_IR 138': 'iso-8859-8',
  'ISO_IR 148': 'iso-8859-9',
  'ISO_IR 203': 'iso-8859-15',
  'ISO_IR 166': 'windows-874',
};

/**
 * Latin-1 maps every byte to the code point of the same number. WHATWG's
 * "iso-8859-1" label is windows-1252, which does not, so Latin-1 is decoded by hand.
 */
function decodeLatin1(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/** JIS X 0201 Katakana: bytes 0xA1-0xDF map to U+FF61-U+FF9F. */
function decodeHalfWidthKatakana(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += byte >= 0xa1 && byte <= 0xdf ? String.fromCharCode(0xff61 + byte - 0xa1) : '\ufffd';
  return text;
}

const eucJp = new TextDecoder('euc-jp');
const eucKr = new TextDecoder('euc-kr');
const gbk = new TextDecoder('gbk');

/** JIS X 0208 in 7-bit form: each byte pair is shifted to EUC-JP and decoded there. */
function decodeJisX0208(bytes: Uint8Array): string {
  return eucJp.decode(bytes.map((byte) => byte | 0x80));
}

/** JIS X 0212 in 7-bit form: EUC-JP code set 3 is 0x8F followed by the shifted pair. */
function decodeJisX0212(bytes: Uint8Array): string {
  const shifted: number[] = [];
  for (let index = 0; index + 1 < bytes.length; index += 2) shifted.push(0x8f, (bytes[index] ?? 0) | 0x80, (bytes[index + 1] ?? 0) | 0x80);
  return eucJp.decode(new Uint8Array(shifted));
}

/** KS X 1001 and GB 2312 sit in G1 (bytes 0xA1-0xFE), exactly as EUC-KR and GBK encode them. */
function decodeEucKr(bytes: Uint8Array): string {
  return eucKr.decode(bytes);
}

function decodeGb2312(bytes: Uint8Array): string {
  return gbk.decode(bytes);
}

/** A character set an ISO 2022 escape sequence designates, and the half of the code table it goes to. */
interface Designation {
  term: string;
  target: 'G0' | 'G1';
  decode: Decode;
}

const ESC = 0x1b;

/** Escape sequences of PS3.3 Table C.12-3 and C.12-4, keyed by the bytes after ESC. */
const escapeSequences: Record<string, Designation> = {
  '(B': { term: 'ISO 2022 IR 6', target: 'G0', decode: decodeLatin1 },
  // JIS X 0201 Romaji differs from ASCII only at 0x5C (YEN SIGN) and 0x7E (OVERLINE). They are kept as
  // backslash and tilde, because 0x5C also separates values in every character set.
  '(J': { term: 'ISO 2022 IR 13', target: 'G0', decode: decodeLatin1 },
  ')I': { term: 'ISO 2022 IR 13', target: 'G1', decode: decodeHalfWidthKatakana },
  '$B': { term: 'ISO 2022 IR 87', target: 'G0', decode: decodeJisX0208 },
  '$(D': { term: 'ISO 2022 IR 159', target: 'G0', decode: decodeJisX0212 },
  '$)C': { term: 'ISO 2022 IR 149', target: 'G1', decode: decodeEucKr },
  '$)A': { term: 'ISO 2022 IR 58', target: 'G1', decode: decodeGb2312 },
  '-A': { term: 'ISO 2022 IR 100', target: 'G1', decode: decodeLatin1 },
  '-B': { term: 'ISO 2022 IR 101', target: 'G1', decode: webDecoder('iso-8859-2') },
  '-C': { term: 'ISO 2022 IR 109', target: 'G1', decode: webDecoder('iso-8859-3') },
  '-D': { term: 'ISO 2022 IR 110', target: 'G1', decode: webDecoder('iso-8859-4') },
  '-L': { term: 'ISO 2022 IR 144', target: 'G1', decode: webDecoder('iso-8859-5') },
  '-G': { term: 'ISO 2022 IR 127', target: 'G1', decode: webDecoder('iso-8859-6') },
  '-F': { term: 'ISO 2022 IR 126', target: 'G1', decode: webDecoder('iso-8859-7') },
  '-H': { term: 'ISO 2022 IR 138', target: 'G1', decode: webDecoder('iso-8859-8') },
  '-M': { term: 'ISO 2022 IR 148', target: 'G1', decode: webDecoder('iso-8859-9') },
  '-b': { term: 'ISO 2022 IR 203', target: 'G1', decode: webDecoder('iso-8859-15') },
  '-T': { term: 'ISO 2022 IR 166', target: 'G1', decode: webDecoder('windows-874') },
};

/**
 * Defined Terms of SpecificCharacterSet (PS3.3 C.12.1.1.2) that worklist
 * responses are decoded in, taken from the decoding tables above: without
 * code extensions first, then the ISO 2022 terms with code extensions.
 */
export function supportedCharacterSets(): string[] {
  const plain = ['ISO_IR 6', ...Object.keys(singleByteLabels), 'ISO_IR 13', 'ISO_IR 192', 'GB18030', 'GBK'];
  const extended = [...new Set(Object.values(escapeSequences).map((designation) => designation.term))];
  return [...plain, ...extended];
}

/** Sets whose characters are two bytes in G0. */
const twoByteSets = new Set(['ISO 2022 IR 87', 'ISO 2022 IR 159']);

const ascii: Designation = { term: 'ISO 2022 IR 6', target: 'G0', decode: decodeLatin1 };

export interface DecodedText {
  text: string;
  problems: CharsetProblem[];
}

/** Defined Terms without code extensions map to the ISO 2022 term of the same set, to find its escape sequence. */
function iso2022Term(term: string): string {
  if (term === '' || term === 'ISO_IR 6') return 'ISO 2022 IR 6';
  return term.replace(/^ISO_IR /, 'ISO 2022 IR ');
}

/**
 * Decodes text of one data set. Built once per data set from its
 * SpecificCharacterSet (0008,0005), whose values are passed as they were
 * received (an empty first value means the default repertoire).
 */
export class TextDecoderForDataset {
  private readonly first: string;
  private readonly codeExtensions: boolean;
  private readonly single: Decode | undefined;
  private readonly problem: CharsetProblem | undefined;
  private readonly declared: boolean;
  private readonly startG0: Designation = ascii;
  private readonly startG1: Designation | undefined;

  /**
   * @param specificCharacterSet values of (0008,0005); empty or absent means none declared.
   * @param assumedWhenAbsent Defined Term used when none is declared, such as "ISO_IR 100".
   */
  constructor(specificCharacterSet: string[], assumedWhenAbsent?: string) {
    const declared = specificCharacterSet.map((term) => term.trim());
    this.declared = declared.some((term) => term !== '');
    const terms = this.declared ? declared : [assumedWhenAbsent ?? ''];
    this.first = terms[0] ?? '';
    // ISO_IR 13 has no escape sequences but two halves (romaji and katakana), decoded like its ISO 2022 form.
    this.codeExtensions = terms.length > 1 || this.first.startsWith('ISO 2022') || this.first === 'ISO_IR 13';

    if (this.codeExtensions) {
      // At the start of each value, G0 and G1 hold the sets of the first value (PS3.5 6.1.2.5.3).
      const initial = iso2022Term(this.first);
      for (const designation of Object.values(escapeSequences)) {
        if (designation.term !== initial) continue;
        if (designation.target === 'G0') this.startG0 = designation;
        else this.startG1 = designation;
      }
      if (this.first !== '' && this.startG0 === ascii && this.startG1 === undefined && initial !== 'ISO 2022 IR 6') this.problem = 'unknown-character-set';
    } else if (!['', 'ISO_IR 6', 'ISO_IR 192', 'GB18030', 'GBK'].includes(this.first)) {
      const label = singleByteLabels[this.first];
      if (this.first === 'ISO_IR 100') this.single = decodeLatin1;
      else if (label !== undefined) this.single = webDecoder(label);
      else this.problem = 'unknown-character-set';
    }
  }

  /** True when the data set declares a character set other than the default repertoire. */
  get declaresCharacterSet(): boolean {
    return this.declared;
  }

  /**
   * Decodes one text value (all its values, backslashes included). Bytes
   * that the declared set cannot decode are kept as Latin-1 characters, so
   * nothing is lost, and reported as a problem.
   */
  decode(bytes: Uint8Array): DecodedText {
    const problems: CharsetProblem[] = [];
    if (this.problem) problems.push(this.problem);
    const plainAscii = !bytes.some((byte) => byte >= 0x80 || byte === ESC);
    if (plainAscii) return { text: decodeLatin1(bytes), problems };

    if (this.codeExtensions) return this.decodeIso2022(bytes, problems);
    if (this.first === 'ISO_IR 192') return decodeUtf8OrLatin1(bytes, problems, 'invalid-bytes');
    if (this.first === 'GB18030' || this.first === 'GBK') return { text: webDecoder(this.first === 'GBK' ? 'gbk' : 'gb18030')(bytes), problems };
    if (this.first === '' || this.first === 'ISO_IR 6') {
      // Servers that send UTF-8 without declaring it are common, and valid UTF-8 is rarely anything else.
      problems.push(this.declared ? 'invalid-bytes' : 'undeclared-non-ascii');
      return decodeUtf8OrLatin1(bytes, problems, undefined);
    }
    return { text: (this.single ?? decodeLatin1)(bytes), problems };
  }

  private decodeIso2022(bytes: Uint8Array, problems: CharsetProblem[]): DecodedText {
    let g0 = this.startG0;
    let g1 = this.startG1;
    let text = '';
    let index = 0;
    while (index < bytes.length) {
      const byte = bytes[index] ?? 0;
      if (byte === ESC) {
        const escape = readEscape(bytes, index);
        if (escape === undefined) {
          problems.push('unknown-escape-sequence');
          text += '\u001b';
          index += 1;
          continue;
        }
        if (escape.designation.target === 'G0') g0 = escape.designation;
        else g1 = escape.designation;
        index += escape.length;
        continue;
      }
      // A two-byte set has no control characters: one ends it, as writers must switch back before them
      // (PS3.5 6.1.2.5.3), so a writer that forgot the escape sequence loses no more than one character.
      if (byte < 0x21 && twoByteSets.has(g0.term)) g0 = this.startG0;
      // A run of bytes in one half of the code table, up to the next escape, the other half or a control character.
      const upper = byte >= 0x80;
      let end = index + 1;
      while (end < bytes.length && bytes[end] !== ESC && (bytes[end] ?? 0) >= 0x80 === upper && !(twoByteSets.has(g0.term) && (bytes[end] ?? 0) < 0x21)) end += 1;
      const run = bytes.subarray(index, end);
      if (!upper) text += g0.decode(run);
      else if (g1) text += g1.decode(run);
      else {
        problems.push('invalid-bytes');
        text += decodeLatin1(run);
      }
      index = end;
    }
    return { text, problems };
  }
}

function readEscape(bytes: Uint8Array, index: number): { designation: Designation; length: number } | undefined {
  for (const length of [3, 4]) {
    const designation = escapeSequences[String.fromCharCode(...bytes.subarray(index + 1, index + length))];
    if (designation !== undefined) return { designation, length };
  }
  return undefined;
}

function decodeUtf8OrLatin1(bytes: Uint8Array, problems: CharsetProblem[], problemWhenInvalid: CharsetProblem | undefined): DecodedText {
  try {
    return { text: utf8Strict.decode(bytes), problems };
  } catch {
    if (problemWhenInvalid) problems.push(problemWhenInvalid);
    return { text: decodeLatin1(bytes), problems };
  }
}

/** Decodes a value of a VR whose repertoire is the default one (CS, DA, TM, UI, AE, ...). */
export function decodeDefaultRepertoire(bytes: Uint8Array): string {
  return decodeLatin1(bytes);
}
