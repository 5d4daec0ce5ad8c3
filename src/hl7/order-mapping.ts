import type { CodedEntry, WorklistEntry } from '../worklist/worklist-entry.js';
import { ErrorConditions, Hl7Error } from './hl7-errors.js';
import { date, dateTime, dicomText, requireIdentifier, xcnName, xpnName, type PatientIdentifier } from './hl7-fields.js';
import type { Hl7Message, Hl7Segment } from './hl7-message.js';

export interface OrderMappingConfig {
  /** Assigning authority whose identifier of PID-3 is used; the first identifier when undefined. */
  patientIdAuthority: string | undefined;
  /** Field of an ORM^O01 that contains the accession number, as SEG-n or SEG-n.c. OBR-18 by default. */
  accessionNumberField: string;
}

/** Numbers that identify an order across messages (ORC-2 and ORC-3, or OBR-2 and OBR-3). */
export interface OrderNumbers {
  placerOrderNumber: string;
  fillerOrderNumber: string;
}

/** Change to the order store that one order group of ORM^O01 or OMI^O23 requests. */
export type OrderAction =
  | { kind: 'place'; numbers: OrderNumbers; entries: WorklistEntry[] }
  | { kind: 'cancel'; numbers: OrderNumbers; accessionNumbers: string[] };

/** Demographics an ADT message carries; a field is undefined when the message leaves it out. */
export interface PatientUpdate {
  patient: PatientIdentifier;
  patientName?: string;
  patientBirthDate?: string;
  patientSex?: string;
}

export type MessageEvent =
  | { kind: 'orders'; actions: OrderAction[] }
  | { kind: 'patient-update'; update: PatientUpdate }
  | { kind: 'patient-merge'; merges: Array<{ prior: PatientIdentifier; update: PatientUpdate }> };

/** The message types this listener accepts, as MSH-9.1^MSH-9.2. */
export const supportedMessages = ['ORM^O01', 'OMI^O23', 'ADT^A08', 'ADT^A40'] as const;

const placeCodes = new Set(['NW', 'XO', 'SC']);
const cancelCodes = new Set(['CA', 'OC', 'DC', 'OD', 'CR', 'DR']);
/** Order status values (ORC-5) that make a status-changed message (SC) a cancel. */
const cancelledStatuses = new Set(['CA', 'DC']);

/** DICOM limits (PS3.5 6.2) on the values the listener checks, in characters. */
const SH_LENGTH = 16;
const LO_LENGTH = 64;

/**
 * Maps a parsed message to the changes it requests of the order store. Throws
 * Hl7Error (AR for a message type this listener does not take, AE for a
 * required field that is missing or does not fit DICOM).
 */
export function mapMessage(message: Hl7Message, config: OrderMappingConfig): MessageEvent {
  const type = `${message.header.value(9, 1)}^${message.header.value(9, 2)}`;
  switch (type) {
    case 'ORM^O01':
    case 'OMI^O23':
      return { kind: 'orders', actions: orderGroups(message).map((group) => orderAction(message, group, type, config)) };
    case 'ADT^A08':
      return { kind: 'patient-update', update: patientUpdate(requireSegment(message, 'PID'), config) };
    case 'ADT^A40':
      return { kind: 'patient-merge', merges: merges(message, config) };
  }
  const known = ['ORM', 'OMI', 'ADT'].includes(message.header.value(9, 1));
  const shown = type.replace(/[^\w^]/g, '?').slice(0, 16);
  throw new Hl7Error(
    'AR',
    known ? ErrorConditions.unsupportedEventCode : ErrorConditions.unsupportedMessageType,
    `message type ${shown} is not supported; this receiver accepts ${supportedMessages.join(', ')}`,
    { segment: 'MSH', field: 9 },
  );
}

/** An ORC segment and the segments after it up to the next ORC. */
type OrderGroup = Hl7Segment[];

function orderGroups(message: Hl7Message): OrderGroup[] {
  const groups: OrderGroup[] = [];
  for (const segment of message.segments) {
    if (segment.name === 'ORC') groups.push([segment]);
    else groups.at(-1)?.push(segment);
  }
  if (groups.length === 0) throw new Hl7Error('AE', ErrorConditions.segmentSequenceError, 'message has no ORC segment', { segment: 'ORC' });
  return groups;
}

function orderAction(message: Hl7Message, group: OrderGroup, type: 'ORM^O01' | 'OMI^O23', config: OrderMappingConfig): OrderAction {
  const orc = group[0] as Hl7Segment;
  const obr = group.find((segment) => segment.name === 'OBR');
  const control = orc.value(1).trim().toUpperCase();
  const numbers: OrderNumbers = {
    placerOrderNumber: dicomText(orc.value(2) || (obr?.value(2) ?? '')),
    fillerOrderNumber: dicomText(orc.value(3) || (obr?.value(3) ?? '')),
  };
  const cancelled = cancelCodes.has(control) || (control === 'SC' && cancelledStatuses.has(orc.value(5).trim().toUpperCase()));
  if (cancelled) {
    const accessionNumbers = type === 'OMI^O23' ? group.filter((segment) => segment.name === 'IPC').map((ipc) => dicomText(ipc.value(1))) : [dicomText(fieldAt(message, group, config.accessionNumberField))];
    return { kind: 'cancel', numbers, accessionNumbers: accessionNumbers.filter((accession) => accession !== '') };
  }
  if (!placeCodes.has(control)) {
    const shown = control.replace(/[^\w]/g, '?').slice(0, 4);
    throw new Hl7Error('AE', ErrorConditions.tableValueNotFound, `order control code "${shown}" in ORC-1 is not supported; send NW, XO or SC to place an order and CA, OC or DC to cancel it`, { segment: 'ORC', field: 1 });
  }
  if (numbers.placerOrderNumber === '' && numbers.fillerOrderNumber === '') {
    throw new Hl7Error('AE', ErrorConditions.requiredFieldMissing, 'order has neither a placer order number (ORC-2 or OBR-2) nor a filler order number (ORC-3 or OBR-3)', { segment: 'ORC', field: 2 });
  }
  if (!obr) throw new Hl7Error('AE', ErrorConditions.segmentSequenceError, 'order has no OBR segment after its ORC', { segment: 'OBR' });

  const base = orderBase(message, group, obr, config);
  if (type === 'ORM^O01') {
    // NOTE: OBR-19, OBR-20 and ZDS-1 follow common radiology interface practice, not a
    // profile checked here. Sites map them differently, so compare with the sender's specification.
    const step = obr.value(20);
    return {
      kind: 'place',
      numbers,
      entries: [
        entryOf(base, {
          accessionNumber: accession(dicomText(fieldAt(message, group, config.accessionNumberField)), config.accessionNumberField),
          requestedProcedureId: checked(dicomText(obr.value(19)), 'OBR-19', SH_LENGTH),
          studyInstanceUid: dicomText(segmentIn(message, group, 'ZDS')?.value(1) ?? ''),
          stepId: checked(dicomText(step), 'OBR-20', SH_LENGTH),
          modality: dicomText(obr.value(24)),
          stationAeTitle: '',
          stationName: '',
          location: '',
          protocolCodes: [],
        }),
      ],
    };
  }

  const ipcs = group.filter((segment) => segment.name === 'IPC');
  if (ipcs.length === 0) throw new Hl7Error('AE', ErrorConditions.segmentSequenceError, 'OMI^O23 order has no IPC segment (imaging procedure control)', { segment: 'IPC' });
  return {
    kind: 'place',
    numbers,
    entries: ipcs.map((ipc) =>
      entryOf(base, {
        accessionNumber: accession(dicomText(ipc.value(1)), 'IPC-1'),
        requestedProcedureId: checked(dicomText(ipc.value(2)), 'IPC-2', SH_LENGTH),
        studyInstanceUid: dicomText(ipc.value(3)),
        stepId: checked(dicomText(ipc.value(4)), 'IPC-4', SH_LENGTH),
        modality: dicomText(ipc.value(5)),
        stationAeTitle: dicomText(ipc.value(9)),
        stationName: dicomText(ipc.value(7)),
        location: dicomText(ipc.value(8)),
        protocolCodes: codedEntries(ipc, 6),
      }),
    ),
  };
}

/** Entry fields shared by every procedure of an order group. */
type OrderBase = Omit<WorklistEntry, 'accessionNumber' | 'requestedProcedureId' | 'studyInstanceUid' | 'step'> & {
  stepDescription: string;
  startDate: string;
  startTime: string;
};

/** Fields of one procedure: IPC in OMI^O23, OBR and ZDS in ORM^O01. */
interface ProcedureFields {
  accessionNumber: string;
  requestedProcedureId: string;
  studyInstanceUid: string;
  stepId: string;
  modality: string;
  stationAeTitle: string;
  stationName: string;
  location: string;
  protocolCodes: CodedEntry[];
}

function orderBase(message: Hl7Message, group: OrderGroup, obr: Hl7Segment, config: OrderMappingConfig): OrderBase {
  const pid = requireSegment(message, 'PID');
  const patient = requireIdentifier(pid, 3, config.patientIdAuthority);
  checked(patient.id, 'PID-3', LO_LENGTH);
  const pv1 = message.segment('PV1');
  const orc = group[0] as Hl7Segment;
  // Start of the procedure: TQ1-7 (v2.5 and later), else the start component of OBR-27 or ORC-7 (TQ, v2.4 and earlier).
  const tq1 = segmentIn(message, group, 'TQ1');
  const startSource = tq1?.value(7) ? { segment: 'TQ1', field: 7 } : obr.value(27, 4) ? { segment: 'OBR', field: 27 } : { segment: 'ORC', field: 7 };
  const start = dateTime(tq1?.value(7) || obr.value(27, 4) || orc.value(7, 4), startSource);
  const description = dicomText(obr.value(4, 2) || obr.value(4, 5));
  const requestedCode = codedEntries(obr, 4);
  return {
    patientName: personNameChecked(xpnName(pid, 5), 'PID-5'),
    patientId: patient.id,
    issuerOfPatientId: patient.issuer,
    patientBirthDate: date(pid.value(7), { segment: 'PID', field: 7 }),
    patientSex: administrativeSex(pid.value(8)),
    referringPhysicianName: pv1 ? xcnName(pv1, 8) : '',
    requestingPhysician: orc.present(12) ? xcnName(orc, 12) : xcnName(obr, 16),
    admissionId: dicomText(pv1?.value(19) ?? ''),
    requestedProcedureDescription: description,
    requestedProcedureCodes: requestedCode,
    referencedStudies: [],
    stepDescription: description,
    startDate: start.date,
    startTime: start.time,
  };
}

function entryOf(base: OrderBase, procedure: ProcedureFields): WorklistEntry {
  const { stepDescription, startDate, startTime, ...shared } = base;
  return {
    ...shared,
    accessionNumber: procedure.accessionNumber,
    requestedProcedureId: procedure.requestedProcedureId,
    studyInstanceUid: procedure.studyInstanceUid,
    step: {
      id: procedure.stepId,
      description: stepDescription,
      modality: procedure.modality,
      stationAeTitle: procedure.stationAeTitle,
      stationName: procedure.stationName,
      location: procedure.location,
      startDate,
      startTime,
      performingPhysicianName: '',
      protocolCodes: procedure.protocolCodes,
    },
  };
}

/** Coded entries of a CE or CWE field (identifier, text, coding system, ..., version in component 7), one per repetition. */
function codedEntries(segment: Hl7Segment, field: number): CodedEntry[] {
  return segment.repetitions(field).flatMap((_, index) => {
    const value = (component: number): string => dicomText(segment.value(field, component, 1, index + 1));
    const code: CodedEntry = { codeValue: value(1), codingSchemeDesignator: value(3), codingSchemeVersion: value(7), codeMeaning: value(2) };
    return code.codeValue === '' && code.codeMeaning === '' ? [] : [code];
  });
}

function patientUpdate(pid: Hl7Segment, config: OrderMappingConfig): PatientUpdate {
  const update: PatientUpdate = { patient: requireIdentifier(pid, 3, config.patientIdAuthority) };
  checked(update.patient.id, 'PID-3', LO_LENGTH);
  // A field left out keeps the stored value; the HL7 null "" clears it.
  if (pid.present(5)) update.patientName = personNameChecked(xpnName(pid, 5), 'PID-5');
  if (pid.present(7)) update.patientBirthDate = date(pid.value(7), { segment: 'PID', field: 7 });
  if (pid.present(8)) update.patientSex = administrativeSex(pid.value(8));
  return update;
}

/** PID and MRG pairs of ADT^A40: each merges the prior patient of MRG-1 into the patient of PID-3. */
function merges(message: Hl7Message, config: OrderMappingConfig): Array<{ prior: PatientIdentifier; update: PatientUpdate }> {
  const result: Array<{ prior: PatientIdentifier; update: PatientUpdate }> = [];
  let pid: Hl7Segment | undefined;
  for (const segment of message.segments) {
    if (segment.name === 'PID') pid = segment;
    if (segment.name !== 'MRG') continue;
    if (!pid) throw new Hl7Error('AE', ErrorConditions.segmentSequenceError, 'MRG segment without a PID segment before it', { segment: 'MRG' });
    result.push({ prior: requireIdentifier(segment, 1, config.patientIdAuthority), update: patientUpdate(pid, config) });
    pid = undefined;
  }
  if (result.length === 0) throw new Hl7Error('AE', ErrorConditions.segmentSequenceError, 'ADT^A40 has no MRG segment', { segment: 'MRG' });
  return result;
}

function requireSegment(message: Hl7Message, name: string): Hl7Segment {
  const segment = message.segment(name);
  if (!segment) throw new Hl7Error('AE', ErrorConditions.segmentSequenceError, `message has no ${name} segment`, { segment: name });
  return segment;
}

/** Returns the first segment of this name in the order group, else in the whole message. */
function segmentIn(message: Hl7Message, group: OrderGroup, name: string): Hl7Segment | undefined {
  return group.find((segment) => segment.name === name) ?? message.segment(name);
}

/** Value at a SEG-n or SEG-n.c position, looked up in the order group first. */
function fieldAt(message: Hl7Message, group: OrderGroup, position: string): string {
  const match = /^([A-Z][A-Z0-9]{2})-(\d+)(?:\.(\d+))?$/.exec(position);
  if (!match?.[1] || !match[2]) return '';
  return segmentIn(message, group, match[1])?.value(Number(match[2]), Number(match[3] ?? 1)) ?? '';
}

/** Returns the accession number; it is required, because exams are selected by it. */
function accession(value: string, field: string): string {
  if (value === '') {
    const [segment = field, position] = field.split(/[-.]/);
    throw new Hl7Error('AE', ErrorConditions.requiredFieldMissing, `order has no accession number in ${field}`, { segment, ...(position === undefined ? {} : { field: Number(position) }) });
  }
  return checked(value, field, SH_LENGTH);
}

/** Returns `value` unless it is longer than the DICOM VR allows, which is an AE naming the field. */
function checked(value: string, field: string, maxLength: number): string {
  if (value.length > maxLength) {
    const [segment = field, position] = field.split(/[-.]/);
    throw new Hl7Error('AE', ErrorConditions.dataTypeError, `${field} is longer than ${maxLength} characters, the DICOM limit for the attribute it fills`, {
      segment,
      ...(position === undefined ? {} : { field: Number(position) }),
    });
  }
  return value;
}

/** DICOM PN allows 64 characters per component group (PS3.5 6.2). */
const PN_GROUP_LENGTH = 64;

function personNameChecked(name: string, field: string): string {
  return checked(name, field, PN_GROUP_LENGTH);
}

/**
 * Maps HL7 table 0001 (administrative sex) to DICOM PatientSex (M, F, O or
 * empty). A, N, O and X become O, and U (unknown) becomes empty. Any other
 * value gets an AE instead of being written into objects.
 */
function administrativeSex(value: string): string {
  const code = dicomText(value).trim().toUpperCase();
  if (code === '' || code === 'U') return '';
  if (code === 'M' || code === 'F') return code;
  if (code === 'O' || code === 'A' || code === 'N' || code === 'X') return 'O';
  throw new Hl7Error('AE', ErrorConditions.tableValueNotFound, 'PID-8 is not an administrative sex code of HL7 table 0001 (F, M, O, U, A, N, X)', { segment: 'PID', field: 8 });
}
