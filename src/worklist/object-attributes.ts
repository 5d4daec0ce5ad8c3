import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import { formatDate, formatTime, UTF8_CHARACTER_SET } from '../dicom/values.js';
import { readDataset, type RawElement } from './dataset-reader.js';
import { encodeElement, hasNonAsciiText, type DatasetElement, type StringVr } from './dataset-writer.js';
import { codeItem, MPPS_SOP_CLASS_UID } from './mpps-dataset.js';
import { Tag } from './tags.js';
import type { CodedEntry, WorklistEntry } from './worklist-entry.js';

/** Context that every object of an exam carries from its worklist entry and its MPPS. */
export interface ExamObjectContext {
  entry: WorklistEntry;
  studyInstanceUid: string;
  seriesDescription: string;
  /** The exam's MPPS instance, when an MPPS server is configured. */
  mpps?: { sopInstanceUid: string; performedStepId: string; startedAt: Date };
}

const text = (tag: number, vr: StringVr, value: string): DatasetElement => ({ tag, vr, value });
const complete = (code: CodedEntry): boolean => code.codeValue !== '' && code.codingSchemeDesignator !== '' && code.codeMeaning !== '';

/**
 * Patient, study and series attributes of an exam object, copied unchanged
 * from the worklist entry (PS3.3 C.7.1.1 Patient, C.7.2.1 General Study,
 * C.7.3.1 General Series with its Request Attributes Sequence and Performed
 * Procedure Step Summary). Optional attributes the entry leaves empty are
 * left out, and incomplete codes are dropped, because an empty Type 1 value
 * inside a present item is an error.
 */
export function examObjectAttributes(context: ExamObjectContext): DatasetElement[] {
  const { entry } = context;
  const request: DatasetElement[] = [];
  const optional = (tag: number, vr: StringVr, value: string): void => {
    if (value !== '') request.push(text(tag, vr, value));
  };
  optional(Tag.RequestedProcedureId, 'SH', entry.requestedProcedureId);
  optional(Tag.AccessionNumber, 'SH', entry.accessionNumber);
  request.push(text(Tag.StudyInstanceUid, 'UI', context.studyInstanceUid));
  optional(Tag.RequestedProcedureDescription, 'LO', entry.requestedProcedureDescription);
  const requestedCodes = entry.requestedProcedureCodes.filter(complete);
  if (requestedCodes.length > 0) request.push({ tag: Tag.RequestedProcedureCodeSequence, vr: 'SQ', items: requestedCodes.map(codeItem) });
  optional(Tag.ScheduledProcedureStepId, 'SH', entry.step.id);
  optional(Tag.ScheduledProcedureStepDescription, 'LO', entry.step.description);
  const protocolCodes = entry.step.protocolCodes.filter(complete);
  if (protocolCodes.length > 0) request.push({ tag: Tag.ScheduledProtocolCodeSequence, vr: 'SQ', items: protocolCodes.map(codeItem) });

  const elements: DatasetElement[] = [
    text(Tag.PatientName, 'PN', entry.patientName),
    text(Tag.PatientId, 'LO', entry.patientId),
    text(Tag.PatientBirthDate, 'DA', /^\d{8}$/.test(entry.patientBirthDate) ? entry.patientBirthDate : ''),
    text(Tag.PatientSex, 'CS', ['M', 'F', 'O'].includes(entry.patientSex) ? entry.patientSex : ''),
    text(Tag.AccessionNumber, 'SH', entry.accessionNumber),
    text(Tag.ReferringPhysicianName, 'PN', entry.referringPhysicianName),
    text(Tag.SeriesDescription, 'LO', context.seriesDescription),
    { tag: Tag.RequestAttributesSequence, vr: 'SQ', items: [request] },
  ];
  if (entry.issuerOfPatientId !== '') elements.push(text(Tag.IssuerOfPatientId, 'LO', entry.issuerOfPatientId));
  if (entry.requestedProcedureDescription !== '') elements.push(text(Tag.StudyDescription, 'LO', entry.requestedProcedureDescription));
  if (requestedCodes.length > 0) elements.push({ tag: Tag.ProcedureCodeSequence, vr: 'SQ', items: requestedCodes.map(codeItem) });
  if (context.mpps) {
    elements.push(
      { tag: Tag.ReferencedPerformedProcedureStepSequence, vr: 'SQ', items: [[text(Tag.ReferencedSopClassUid, 'UI', MPPS_SOP_CLASS_UID), text(Tag.ReferencedSopInstanceUid, 'UI', context.mpps.sopInstanceUid)]] },
      text(Tag.PerformedProcedureStepId, 'SH', context.mpps.performedStepId),
      text(Tag.PerformedProcedureStepStartDate, 'DA', formatDate(context.mpps.startedAt)),
      text(Tag.PerformedProcedureStepStartTime, 'TM', formatTime(context.mpps.startedAt)),
    );
    if (entry.step.description !== '') elements.push(text(Tag.PerformedProcedureStepDescription, 'LO', entry.step.description));
  }
  if (hasNonAsciiText(elements)) elements.push(text(Tag.SpecificCharacterSet, 'CS', UTF8_CHARACTER_SET));
  return elements;
}

/** Bytes before the File Meta Information group: preamble and "DICM" (PS3.10 7.1). */
const PREAMBLE_LENGTH = 132;

/**
 * Adds `elements` to a Part 10 file whose data set is in Explicit VR Little
 * Endian (as every endocap object is), replacing top-level elements with the
 * same tags, and keeps every other byte as it is, pixel data included. The
 * File Meta Information is unchanged: its group length covers only itself.
 * Throws DICOM_BUILD_FAILED when the file cannot be read.
 */
export function spliceElements(part10: Buffer, elements: readonly DatasetElement[]): Buffer {
  let datasetStart: number;
  let existing: RawElement[];
  try {
    if (part10.toString('latin1', 128, 132) !== 'DICM') throw new Error('no DICM prefix');
    const meta = readDataset(part10.subarray(PREAMBLE_LENGTH, PREAMBLE_LENGTH + 12), { explicitVr: true })[0];
    if (meta?.tag !== 0x00020000) throw new Error('File Meta Information without its group length');
    datasetStart = PREAMBLE_LENGTH + 12 + meta.value.readUInt32LE(0);
    existing = readDataset(part10.subarray(datasetStart), { explicitVr: true });
  } catch (error) {
    throw new EndocapError(ErrorCodes.DICOM_BUILD_FAILED, `exam attributes not added: the object could not be read (${errorMessage(error)})`, { cause: error });
  }

  const added = [...elements].sort((a, b) => a.tag - b.tag);
  const parts: Buffer[] = [part10.subarray(0, datasetStart)];
  let index = 0;
  for (const element of existing) {
    // New elements with smaller tags go first; one with the same tag replaces the old one.
    let replaced = false;
    for (let candidate = added[index]; candidate !== undefined && candidate.tag <= element.tag; candidate = added[index]) {
      parts.push(encodeElement(candidate, { explicitVr: true }));
      replaced ||= candidate.tag === element.tag;
      index += 1;
    }
    if (!replaced) parts.push(part10.subarray(datasetStart + element.start, datasetStart + element.end));
  }
  for (const element of added.slice(index)) parts.push(encodeElement(element, { explicitVr: true }));
  return Buffer.concat(parts);
}
