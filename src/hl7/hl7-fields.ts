import { ErrorConditions, Hl7Error } from './hl7-errors.js';
import type { Hl7Segment } from './hl7-message.js';

/** A patient identifier chosen from a CX list (PID-3, MRG-1). */
export interface PatientIdentifier {
  id: string;
  /** Namespace id of the assigning authority (CX-4.1), or its universal id (CX-4.2) when the namespace is empty. */
  issuer: string;
}

/**
 * Characters a DICOM text value cannot hold (PS3.5 6.2): backslash separates
 * values, and control characters other than ESC are not allowed in LO, SH and
 * PN. They are replaced with spaces; for PN, `^` and `=` too, because they
 * delimit its components and groups.
 */
export function dicomText(value: string): string {
  return value.replace(/[\\\x00-\x1f\x7f]/g, ' ').trim();
}

function personNameComponent(value: string): string {
  return dicomText(value).replace(/[\^=]/g, ' ').trim();
}

/** Joins name parts as DICOM PN (Family^Given^Middle^Prefix^Suffix), without trailing empty components. */
export function personName(parts: { family: string; given: string; middle: string; prefix: string; suffix: string }): string {
  const components = [parts.family, parts.given, parts.middle, parts.prefix, parts.suffix].map(personNameComponent);
  while (components.length > 0 && components.at(-1) === '') components.pop();
  return components.join('^');
}

/**
 * Patient name from an XPN field (PID-5): the first repetition with name
 * type L (legal), else the first one. XPN has family name (its surname
 * subcomponent), given name, second name, suffix, prefix, degree.
 */
export function xpnName(segment: Hl7Segment, field: number): string {
  const repetitions = segment.repetitions(field);
  const index = Math.max(0, repetitions.findIndex((repetition) => repetition[6]?.[0] === 'L'));
  const repetition = index + 1;
  const part = (component: number): string => segment.value(field, component, 1, repetition);
  return personName({ family: part(1), given: part(2), middle: part(3), suffix: part(4), prefix: part(5) });
}

/** Person name from an XCN field (ORC-12, OBR-16, PV1-8): id, family name, given, second, suffix, prefix. */
export function xcnName(segment: Hl7Segment, field: number): string {
  const part = (component: number): string => segment.value(field, component);
  return personName({ family: part(2), given: part(3), middle: part(4), suffix: part(5), prefix: part(6) });
}

/**
 * Chooses one identifier of a CX list: the first repetition whose assigning
 * authority (namespace id or universal id) equals `authority`, or, without
 * `authority`, the first repetition with an id. Returns undefined when none fits.
 */
export function chooseIdentifier(segment: Hl7Segment, field: number, authority: string | undefined): PatientIdentifier | undefined {
  const repetitions = segment.repetitions(field);
  for (let index = 1; index <= repetitions.length; index += 1) {
    const id = dicomText(segment.value(field, 1, 1, index));
    if (id === '') continue;
    const namespace = dicomText(segment.value(field, 4, 1, index));
    const universal = dicomText(segment.value(field, 4, 2, index));
    if (authority !== undefined && namespace !== authority && universal !== authority) continue;
    return { id, issuer: namespace !== '' ? namespace : universal };
  }
  return undefined;
}

/**
 * Patient identifier of PID-3 (or MRG-1), with an AE naming the field and
 * the configured authority when there is none.
 */
export function requireIdentifier(segment: Hl7Segment, field: number, authority: string | undefined): PatientIdentifier {
  const chosen = chooseIdentifier(segment, field, authority);
  if (chosen) return chosen;
  const name = `${segment.name}-${field}`;
  const reason =
    authority === undefined
      ? `${name} has no patient identifier`
      : `${name} has no patient identifier assigned by "${authority}" (hl7.patientIdAuthority); check the assigning authority (CX-4) the sender uses`;
  throw new Hl7Error('AE', ErrorConditions.requiredFieldMissing, reason, { segment: segment.name, field });
}

/** Field a date is read from, named in the AE for an invalid date: PID-7 is { segment: 'PID', field: 7 }. */
export interface DateField {
  segment: string;
  field: number;
}

function isCalendarDate(text: string): boolean {
  const year = Number(text.slice(0, 4));
  const month = Number(text.slice(4, 6));
  const day = Number(text.slice(6, 8));
  if (month < 1 || month > 12 || day < 1) return false;
  // Day 0 of the next month is the last day of this one.
  return day <= new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function isTimeOfDay(text: string): boolean {
  const [hours, minutes = 0, seconds = 0] = (text.match(/\d\d/g) ?? []).map(Number);
  return hours !== undefined && hours < 24 && minutes < 60 && seconds < 60;
}

/**
 * Splits an HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) into a DICOM DA and
 * TM; the offset is dropped. Empty when the value is empty or only a year or
 * month. For any other value that is not a calendar date with a valid time
 * of day it throws an AE Hl7Error naming the field, because DICOM objects
 * must not get an invalid date.
 */
export function dateTime(value: string, source: DateField): { date: string; time: string } {
  const text = value.trim();
  // A year or a month alone is a valid DTM that a DICOM DA cannot hold.
  if (text === '' || /^\d{4}(?:0[1-9]|1[0-2])?(?:[+-]\d{4})?$/.test(text)) return { date: '', time: '' };
  const match = /^(\d{8})(\d{2,6}(?:\.\d{1,6})?)?(?:[+-]\d{4})?$/.exec(text);
  const time = (match?.[2] ?? '').replace(/^(\d{2}(?:\d{2})?)\d?$/, '$1');
  if (!match?.[1] || !isCalendarDate(match[1]) || (time !== '' && !isTimeOfDay(time))) {
    throw new Hl7Error('AE', ErrorConditions.dataTypeError, `${source.segment}-${source.field} is not a valid date (YYYYMMDD, optionally followed by a time HHMM[SS])`, source);
  }
  return { date: match[1], time };
}

/** Returns a DICOM DA from an HL7 date or date-time, as dateTime. */
export function date(value: string, source: DateField): string {
  return dateTime(value, source).date;
}
