import { formatDate, formatTime, UTF8_CHARACTER_SET } from '../dicom/values.js';
import { SopClassUid } from '../pacs/service-tables.js';
import { hasNonAsciiText, type DatasetElement, type StringVr } from './dataset-writer.js';
import { Tag } from './tags.js';
import type { CodedEntry, SopReference, WorklistEntry } from './worklist-entry.js';

/** Modality Performed Procedure Step SOP Class (PS3.4 F.7.3). */
export const MPPS_SOP_CLASS_UID = SopClassUid.ModalityPerformedProcedureStep;

/** Content of an MPPS instance about the exam it reports. */
export interface PerformedStep {
  sopInstanceUid: string;
  /** PerformedProcedureStepID (SH, at most 16 characters): the internal exam id. */
  performedStepId: string;
  entry: WorklistEntry;
  studyInstanceUid: string;
  studyId: string;
  station: { aeTitle: string; stationName: string };
  startedAt: Date;
}

export interface PerformedSeries {
  seriesInstanceUid: string;
  seriesDescription: string;
  objects: SopReference[];
}

export type FinalStatus = 'COMPLETED' | 'DISCONTINUED';

/** Reasons for a discontinued step, from CID 9300 "Procedure Discontinuation Reasons" (PS3.16). */
export const discontinuationReasons = {
  unspecified: { codeValue: '110513', codingSchemeDesignator: 'DCM', codingSchemeVersion: '', codeMeaning: 'Discontinued for unspecified reason' },
  'wrong-worklist-entry': { codeValue: '110514', codingSchemeDesignator: 'DCM', codingSchemeVersion: '', codeMeaning: 'Incorrect worklist entry selected' },
  'doctor-cancelled': { codeValue: '110500', codingSchemeDesignator: 'DCM', codingSchemeVersion: '', codeMeaning: 'Doctor canceled procedure' },
  'equipment-failure': { codeValue: '110501', codingSchemeDesignator: 'DCM', codingSchemeVersion: '', codeMeaning: 'Equipment failure' },
  'patient-refused': { codeValue: '110505', codingSchemeDesignator: 'DCM', codingSchemeVersion: '', codeMeaning: 'Patient refused to continue procedure' },
} as const satisfies Record<string, CodedEntry>;

export type DiscontinuationReason = keyof typeof discontinuationReasons;

const text = (tag: number, vr: StringVr, value: string): DatasetElement => ({ tag, vr, value });
const sequence = (tag: number, items: DatasetElement[][]): DatasetElement => ({ tag, vr: 'SQ', items });

/** Builds a code sequence item; a value longer than 16 characters goes to LongCodeValue (PS3.3 8.8). */
export function codeItem(code: CodedEntry): DatasetElement[] {
  const item: DatasetElement[] = [
    code.codeValue.length > 16 ? text(Tag.LongCodeValue, 'UC', code.codeValue) : text(Tag.CodeValue, 'SH', code.codeValue),
    text(Tag.CodingSchemeDesignator, 'SH', code.codingSchemeDesignator),
    text(Tag.CodeMeaning, 'LO', code.codeMeaning),
  ];
  if (code.codingSchemeVersion !== '') item.push(text(Tag.CodingSchemeVersion, 'SH', code.codingSchemeVersion));
  return item;
}

/** Adds SpecificCharacterSet ISO_IR 192 when any text is non-ASCII, because the writer writes UTF-8. */
export function withCharacterSet(elements: DatasetElement[]): DatasetElement[] {
  return hasNonAsciiText(elements) ? [text(Tag.SpecificCharacterSet, 'CS', UTF8_CHARACTER_SET), ...elements] : elements;
}

/**
 * Attributes of the N-CREATE that starts an MPPS IN PROGRESS (PS3.4 F.7.2.1,
 * Table F.7.2-1): the relationship to the worklist step, the performed step
 * and empty acquisition results. Values from the worklist are copied unchanged.
 */
export function mppsCreateAttributes(step: PerformedStep): DatasetElement[] {
  const { entry } = step;
  const scheduled: DatasetElement[] = [
    text(Tag.StudyInstanceUid, 'UI', step.studyInstanceUid),
    sequence(Tag.ReferencedStudySequence, entry.referencedStudies.map(referenceItem)),
    text(Tag.AccessionNumber, 'SH', entry.accessionNumber),
    text(Tag.RequestedProcedureId, 'SH', entry.requestedProcedureId),
    text(Tag.RequestedProcedureDescription, 'LO', entry.requestedProcedureDescription),
    text(Tag.ScheduledProcedureStepId, 'SH', entry.step.id),
    text(Tag.ScheduledProcedureStepDescription, 'LO', entry.step.description),
    sequence(Tag.ScheduledProtocolCodeSequence, entry.step.protocolCodes.map(codeItem)),
  ];
  return withCharacterSet([
    sequence(Tag.ScheduledStepAttributesSequence, [scheduled]),
    text(Tag.PatientName, 'PN', entry.patientName),
    text(Tag.PatientId, 'LO', entry.patientId),
    ...(entry.issuerOfPatientId === '' ? [] : [text(Tag.IssuerOfPatientId, 'LO', entry.issuerOfPatientId)]),
    // An invalid date or sex from the worklist is left empty, as in the objects, rather than have the server reject the message.
    text(Tag.PatientBirthDate, 'DA', /^\d{8}$/.test(entry.patientBirthDate) ? entry.patientBirthDate : ''),
    text(Tag.PatientSex, 'CS', ['M', 'F', 'O'].includes(entry.patientSex) ? entry.patientSex : ''),
    sequence(Tag.ReferencedPatientSequence, []),
    text(Tag.AdmissionId, 'LO', entry.admissionId),
    text(Tag.PerformedProcedureStepId, 'SH', step.performedStepId),
    text(Tag.PerformedStationAeTitle, 'AE', step.station.aeTitle),
    text(Tag.PerformedStationName, 'SH', step.station.stationName),
    text(Tag.PerformedLocation, 'SH', entry.step.location),
    text(Tag.PerformedProcedureStepStartDate, 'DA', formatDate(step.startedAt)),
    text(Tag.PerformedProcedureStepStartTime, 'TM', formatTime(step.startedAt)),
    text(Tag.PerformedProcedureStepStatus, 'CS', 'IN PROGRESS'),
    text(Tag.PerformedProcedureStepDescription, 'LO', entry.step.description),
    text(Tag.PerformedProcedureTypeDescription, 'LO', entry.requestedProcedureDescription),
    sequence(Tag.ProcedureCodeSequence, entry.requestedProcedureCodes.map(codeItem)),
    text(Tag.PerformedProcedureStepEndDate, 'DA', ''),
    text(Tag.PerformedProcedureStepEndTime, 'TM', ''),
    text(Tag.Modality, 'CS', 'ES'),
    text(Tag.StudyId, 'SH', step.studyId),
    sequence(Tag.PerformedProtocolCodeSequence, []),
    sequence(Tag.PerformedSeriesSequence, []),
  ]);
}

/**
 * Attributes of the final N-SET (PS3.4 F.7.2.2): the end, the status and the
 * Performed Series Sequence with every object of the exam. A discontinued
 * step carries its reason code (PS3.3 C.4.14).
 */
export function mppsFinalAttributes(step: PerformedStep, outcome: { status: FinalStatus; endedAt: Date; series: PerformedSeries[]; reason?: DiscontinuationReason }): DatasetElement[] {
  const series = outcome.series.map((performed): DatasetElement[] => [
    text(Tag.PerformingPhysicianName, 'PN', step.entry.step.performingPhysicianName),
    text(Tag.ProtocolName, 'LO', step.entry.step.description || step.entry.requestedProcedureDescription || 'Endoscopy'),
    text(Tag.OperatorsName, 'PN', ''),
    text(Tag.SeriesInstanceUid, 'UI', performed.seriesInstanceUid),
    text(Tag.SeriesDescription, 'LO', performed.seriesDescription),
    text(Tag.RetrieveAETitle, 'AE', ''),
    sequence(Tag.ReferencedImageSequence, performed.objects.map(referenceItem)),
    sequence(Tag.ReferencedNonImageCompositeSopInstanceSequence, []),
  ]);
  const elements: DatasetElement[] = [
    text(Tag.PerformedProcedureStepStatus, 'CS', outcome.status),
    text(Tag.PerformedProcedureStepEndDate, 'DA', formatDate(outcome.endedAt)),
    text(Tag.PerformedProcedureStepEndTime, 'TM', formatTime(outcome.endedAt)),
    sequence(Tag.PerformedSeriesSequence, series),
  ];
  if (outcome.status === 'DISCONTINUED') {
    elements.push(sequence(Tag.PerformedProcedureStepDiscontinuationReasonCodeSequence, [codeItem(discontinuationReasons[outcome.reason ?? 'unspecified'])]));
  }
  return withCharacterSet(elements);
}

function referenceItem(reference: SopReference): DatasetElement[] {
  return [text(Tag.ReferencedSopClassUid, 'UI', reference.sopClassUid), text(Tag.ReferencedSopInstanceUid, 'UI', reference.sopInstanceUid)];
}
