import { isHl7CharacterSet } from './hl7-character-sets.js';
import type { AckCode, Hl7Error } from './hl7-errors.js';
import { defaultSeparators, type MessageHeader, type Separators } from './hl7-message.js';

export interface AckOptions {
  /** Header of the message acknowledged; undefined when it could not be read. */
  header: MessageHeader | undefined;
  /** MSH-9.2 of the message acknowledged, such as O01; empty when unknown. */
  triggerEvent: string;
  code: AckCode;
  /** The reason of an AE or AR; its message is sent in MSA-3 and ERR-8. */
  error?: Hl7Error;
  /** MSH-3 and MSH-4 of the ACK: this receiver. */
  receivingApplication: string;
  receivingFacility: string;
  /** MSH-10 of the ACK. */
  controlId: string;
  now: Date;
}

/**
 * Builds an original-mode ACK. MSH has sender and
 * receiver swapped, and MSA the code and the control id of the message. For
 * AE and AR an ERR segment has the condition code of table 0357 and the
 * reason. The text is ASCII, so it is valid in whatever MSH-18 the sender
 * declared. The ACK declares that set too when it is supported.
 */
export function buildAck(options: AckOptions): Buffer {
  const { header } = options;
  const separators = header?.separators ?? defaultSeparators;
  const field = separators.field;
  const encodingCharacters = [separators.component, separators.repetition, separators.escape, separators.subcomponent, separators.truncation].join('');
  const text = (value: string): string => escapeText(asciiOnly(value), separators);
  const characterSet = header !== undefined && isHl7CharacterSet(header.characterSet) ? header.characterSet : '';

  const msh = [
    'MSH',
    encodingCharacters,
    text(options.receivingApplication),
    text(options.receivingFacility),
    header?.sendingApplication ?? '',
    header?.sendingFacility ?? '',
    hl7Timestamp(options.now),
    '',
    ['ACK', options.triggerEvent, 'ACK'].filter((part) => part !== '').join(separators.component),
    text(options.controlId),
    header?.processingId || 'P',
    header?.versionId || '2.5',
    '',
    '',
    '',
    '',
    '',
    characterSet,
  ];
  const segments = [trimTrailing(msh).join(field)];

  const error = options.error;
  const msa = ['MSA', options.code, header?.controlId ?? ''];
  if (options.code !== 'AA' && error) msa.push(text(error.message));
  segments.push(msa.join(field));

  if (options.code !== 'AA' && error) {
    const location = error.location;
    const component = separators.component;
    const subcomponent = separators.subcomponent || component;
    const condition = [error.condition.code, text(error.condition.text), 'HL70357'];
    const positions = location ? [location.segment, '1', location.field === undefined ? '' : String(location.field)] : [];
    const err = [
      'ERR',
      // ERR-1 in the v2.3 layout (segment^sequence^field^condition), for receivers that read only that.
      location ? [...positions, condition.join(subcomponent)].join(component) : '',
      positions.join(component),
      condition.join(component),
      'E',
      '',
      '',
      '',
      text(error.message),
    ];
    segments.push(trimTrailing(err).join(field));
  }
  return Buffer.from(`${segments.join('\r')}\r`, 'latin1');
}

/** HL7 DTM of the local time with its offset: YYYYMMDDHHMMSS+ZZZZ. */
export function hl7Timestamp(date: Date): string {
  const pad = (value: number, width = 2): string => String(Math.abs(value)).padStart(width, '0');
  const offset = -date.getTimezoneOffset();
  const sign = offset < 0 ? '-' : '+';
  return (
    `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}` +
    `${sign}${pad(Math.trunc(offset / 60))}${pad(offset % 60)}`
  );
}

function asciiOnly(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?');
}

/** Writes delimiter characters in text as escape sequences. */
function escapeText(value: string, separators: Separators): string {
  if (separators.escape === '') return value;
  const replacements: Array<[string, string]> = [
    [separators.escape, 'E'],
    [separators.field, 'F'],
    [separators.component, 'S'],
    [separators.repetition, 'R'],
    [separators.subcomponent, 'T'],
    [separators.truncation, 'P'],
  ];
  let result = '';
  for (const character of value) {
    const replacement = replacements.find(([delimiter]) => delimiter !== '' && delimiter === character);
    result += replacement ? `${separators.escape}${replacement[1]}${separators.escape}` : character;
  }
  return result;
}

function trimTrailing(fields: string[]): string[] {
  const result = [...fields];
  while (result.length > 1 && result.at(-1) === '') result.pop();
  return result;
}
