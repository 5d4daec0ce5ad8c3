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

/** Splits an HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) into a DICOM DA and TM; the offset is dropped. */
export function dateTime(value: string): { date: string; time: string } {
  const match = /^(\d{8})(\d{2,6}(?:\.\d{1,6})?)?/.exec(value.trim());
  if (!match?.[1]) return { date: '', time: '' };
  const time = (match[2] ?? '').replace(/^(\d{2}(?:\d{2})?)\d?$/, '$1');
  return { date: match[1], time };
}

/** Returns a DICOM DA from an HL7 date or date-time; empty unless it has at least a whole date. */
export function date(value: string): string {
  return dateTime(value).date;
}
