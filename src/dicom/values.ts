import { EndocapError, ErrorCodes } from '../errors.js';

/**
 * Formatting and checks of DICOM attribute values (PS3.5 6.2). Dates and times
 * are written in the box's local time zone. Error messages name the attribute
 * and never contain its value, because values may be patient data.
 */

export type TextVr = 'AE' | 'CS' | 'LO' | 'LT' | 'PN' | 'SH' | 'ST' | 'UC';

/**
 * Maximum length per VR (PS3.5 Table 6.2-1); for PN it applies to each component
 * group. The standard counts characters, but dciodvfy (dicom3tools 1.00~20220618 in Debian 12)
 * and receivers with byte-sized columns count bytes, so the limit is applied to the
 * UTF-8 bytes: stricter for non-ASCII text, and valid under both readings.
 */
const maxCharacters: Record<TextVr, number> = {
  AE: 16,
  CS: 16,
  LO: 64,
  LT: 10240,
  PN: 64,
  SH: 16,
  ST: 1024,
  // UC is limited only by the 32-bit value length.
  UC: 2 ** 32 - 2,
};

// Backslash separates values, so a single value cannot contain it. ESC (0x1b) is
// only needed for ISO 2022 code extensions, which endocap never writes.
const controlCharacters = /[\u0000-\u0009\u000b\u000c\u000e-\u001f\u007f]/;
const multiLineControlCharacters = /[\u0000-\u0009\u000b\u000e-\u001f\u007f]/;
const codeStringPattern = /^[A-Z0-9 _]*$/;
const aeTitlePattern = /^[\x20-\x5b\x5d-\x7e]*$/;

/**
 * Checks one text value against its VR and returns it.
 * Throws DICOM_BUILD_FAILED when it is too long or contains a character the VR forbids.
 */
export function checkText(keyword: string, vr: TextVr, value: string): string {
  const fail = (problem: string): never => {
    throw new EndocapError(ErrorCodes.DICOM_BUILD_FAILED, `invalid ${keyword}: ${problem}`);
  };

  const limit = maxCharacters[vr];
  const parts = vr === 'PN' ? value.split('=') : [value];
  if (vr === 'PN' && parts.length > 3) fail('a person name has at most 3 component groups');
  for (const part of parts) {
    const bytes = Buffer.byteLength(part, 'utf8');
    if (bytes > limit) fail(`${bytes} bytes as UTF-8, more than the ${limit} allowed by VR ${vr}`);
  }

  if (vr === 'LT' || vr === 'ST') {
    if (multiLineControlCharacters.test(value)) fail(`contains a control character not allowed in VR ${vr}`);
    return value;
  }
  if (value.includes('\\')) fail('contains a backslash, which separates values');
  if (controlCharacters.test(value) || /[\r\n]/.test(value)) fail(`contains a control character not allowed in VR ${vr}`);
  if (vr === 'CS' && !codeStringPattern.test(value)) fail('code strings allow only upper-case letters, digits, space and underscore');
  if (vr === 'AE' && !aeTitlePattern.test(value)) fail('AE titles allow only printable ASCII characters');
  return value;
}

/** Checks a DA value (YYYYMMDD) such as a birth date received from a worklist. */
export function checkDate(keyword: string, value: string): string {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(value);
  const month = Number(match?.[2]);
  const day = Number(match?.[3]);
  if (match === null || month < 1 || month > 12 || day < 1 || day > 31) {
    throw new EndocapError(ErrorCodes.DICOM_BUILD_FAILED, `invalid ${keyword}: expected a date as YYYYMMDD`);
  }
  return value;
}

/**
 * SpecificCharacterSet (0008,0005) of every data set endocap writes with
 * non-ASCII text: UTF-8, because dcmjs and the worklist writer encode every
 * string as UTF-8. Data sets of ASCII text declare none (default repertoire).
 */
export const UTF8_CHARACTER_SET = 'ISO_IR 192';

/** True when any character is outside the default repertoire (ASCII), so SpecificCharacterSet is needed. */
export function isNonAscii(value: string): boolean {
  return /[^\x00-\x7f]/.test(value);
}

const pad = (value: number, width = 2): string => String(value).padStart(width, '0');

/** DA in local time: YYYYMMDD. */
export function formatDate(date: Date): string {
  return `${pad(date.getFullYear(), 4)}${pad(date.getMonth() + 1)}${pad(date.getDate())}`;
}

/** TM in local time with milliseconds: HHMMSS.fff. */
export function formatTime(date: Date): string {
  return `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** Offset of local time from UTC as in TimezoneOffsetFromUTC (0008,0201): &HHMM. */
export function formatTimezoneOffset(date: Date): string {
  const minutesEast = -date.getTimezoneOffset();
  const sign = minutesEast < 0 ? '-' : '+';
  const absolute = Math.abs(minutesEast);
  return `${sign}${pad(Math.floor(absolute / 60))}${pad(absolute % 60)}`;
}

/** DT in local time with milliseconds and its UTC offset: YYYYMMDDHHMMSS.fff&HHMM. */
export function formatDateTime(date: Date): string {
  return `${formatDate(date)}${formatTime(date)}${formatTimezoneOffset(date)}`;
}
