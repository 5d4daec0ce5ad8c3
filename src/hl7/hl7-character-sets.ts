import { ErrorConditions, Hl7Error } from './hl7-errors.js';

/**
 * MSH-18 values (HL7 table 0211) this listener decodes. Each is a superset of
 * ASCII in which every byte of a non-ASCII character is above 0x7F, so the
 * separator characters cannot occur inside a character. Sets where they can
 * (ISO IR87 and the other ISO 2022 sets, BIG-5, GB 18030, UTF-16) are not
 * offered.
 */
export const hl7CharacterSets = ['ASCII', '8859/1', '8859/2', '8859/3', '8859/4', '8859/5', '8859/6', '8859/7', '8859/8', '8859/9', '8859/15', 'UNICODE UTF-8'] as const;

export type Hl7CharacterSet = (typeof hl7CharacterSets)[number];

type Decode = (bytes: Buffer) => string;

function webDecoder(name: Hl7CharacterSet, label: string): Decode {
  const decoder = new TextDecoder(label, { fatal: true });
  return (bytes) => {
    try {
      return decoder.decode(bytes);
    } catch {
      throw new Hl7Error('AE', ErrorConditions.dataTypeError, `message has bytes that are not characters of ${name}, the character set of MSH-18`, { segment: 'MSH', field: 18 });
    }
  };
}

function asciiDecoder(bytes: Buffer): string {
  if (bytes.some((byte) => byte > 0x7f)) {
    throw new Hl7Error(
      'AE',
      ErrorConditions.dataTypeError,
      'message has bytes above 0x7F but its character set is ASCII; declare the character set in MSH-18 (such as 8859/1 or UNICODE UTF-8) or set hl7.defaultCharacterSet on the receiver',
      { segment: 'MSH', field: 18 },
    );
  }
  return bytes.toString('latin1');
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

function utf8Decoder(bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new Hl7Error('AE', ErrorConditions.dataTypeError, 'message is not valid UTF-8 although MSH-18 declares UNICODE UTF-8', { segment: 'MSH', field: 18 });
  }
}

/*
 * Node's Buffer 'latin1' is ISO 8859-1 exactly; the WHATWG label iso-8859-1
 * would mean windows-1252. The other labels are WHATWG encodings; iso-8859-9
 * there is windows-1254, which differs from ISO 8859-9 only in 0x80 to 0x9F.
 */
const decoders: Record<Hl7CharacterSet, Decode> = {
  ASCII: asciiDecoder,
  '8859/1': (bytes) => bytes.toString('latin1'),
  '8859/2': webDecoder('8859/2', 'iso-8859-2'),
  '8859/3': webDecoder('8859/3', 'iso-8859-3'),
  '8859/4': webDecoder('8859/4', 'iso-8859-4'),
  '8859/5': webDecoder('8859/5', 'iso-8859-5'),
  '8859/6': webDecoder('8859/6', 'iso-8859-6'),
  '8859/7': webDecoder('8859/7', 'iso-8859-7'),
  '8859/8': webDecoder('8859/8', 'iso-8859-8'),
  '8859/9': webDecoder('8859/9', 'iso-8859-9'),
  '8859/15': webDecoder('8859/15', 'iso-8859-15'),
  'UNICODE UTF-8': utf8Decoder,
};

export function isHl7CharacterSet(value: string): value is Hl7CharacterSet {
  return (hl7CharacterSets as readonly string[]).includes(value);
}

/**
 * Returns the decoder of an MSH-18 value; `fallback` is used when MSH-18 is
 * empty. Throws an AE Hl7Error naming the value when the set is not supported
 * (character set names are not patient data).
 */
export function decoderFor(declared: string, fallback: Hl7CharacterSet): Decode {
  const name = declared.trim();
  if (name === '') return decoders[fallback];
  if (isHl7CharacterSet(name)) return decoders[name];
  const shown = name.replace(/[^\x20-\x7e]/g, '?').slice(0, 32);
  throw new Hl7Error('AE', ErrorConditions.tableValueNotFound, `character set "${shown}" in MSH-18 is not supported; send one of ${hl7CharacterSets.join(', ')}`, { segment: 'MSH', field: 18 });
}
