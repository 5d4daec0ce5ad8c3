import type { DatasetElement, StringVr } from './dataset-writer.js';
import { Tag } from './tags.js';

/** Matching keys of a worklist query; every other key of the identifier is an empty return key. */
export interface WorklistQuery {
  /** ScheduledStationAETitle to match; absent matches every station. */
  stationAeTitle?: string;
  /** Modality to match, such as ES; absent matches every modality. */
  modality?: string;
  /** First and last ScheduledProcedureStepStartDate, as YYYYMMDD. */
  fromDate: string;
  toDate: string;
}

const text = (tag: number, vr: StringVr, value = ''): DatasetElement => ({ tag, vr, value });

/** Builds an item of empty code keys, which requests every code of the sequence. */
function codeKeys(tag: number): DatasetElement {
  return {
    tag,
    vr: 'SQ',
    items: [[text(Tag.CodeValue, 'SH'), text(Tag.CodingSchemeDesignator, 'SH'), text(Tag.CodingSchemeVersion, 'SH'), text(Tag.CodeMeaning, 'LO')]],
  };
}

/**
 * Builds the C-FIND identifier of a Modality Worklist query (PS3.4 K.6.1.2.2).
 * It is written here rather than by dcmjs-dimse's worklist request, which
 * sends PregnancyStatus as 0 (an empty US value encodes as 0) so that Orthanc
 * matches nothing. No SpecificCharacterSet is sent: every matching key is ASCII.
 */
export function buildWorklistQuery(query: WorklistQuery): DatasetElement[] {
  const dates = query.fromDate === query.toDate ? query.fromDate : `${query.fromDate}-${query.toDate}`;
  const step: DatasetElement[] = [
    text(Tag.Modality, 'CS', query.modality ?? ''),
    text(Tag.ScheduledStationAeTitle, 'AE', query.stationAeTitle ?? ''),
    text(Tag.ScheduledProcedureStepStartDate, 'DA', dates),
    text(Tag.ScheduledProcedureStepStartTime, 'TM'),
    text(Tag.ScheduledPerformingPhysicianName, 'PN'),
    text(Tag.ScheduledProcedureStepDescription, 'LO'),
    codeKeys(Tag.ScheduledProtocolCodeSequence),
    text(Tag.ScheduledProcedureStepId, 'SH'),
    text(Tag.ScheduledStationName, 'SH'),
    text(Tag.ScheduledProcedureStepLocation, 'SH'),
  ];
  return [
    text(Tag.AccessionNumber, 'SH'),
    text(Tag.ReferringPhysicianName, 'PN'),
    { tag: Tag.ReferencedStudySequence, vr: 'SQ', items: [[text(Tag.ReferencedSopClassUid, 'UI'), text(Tag.ReferencedSopInstanceUid, 'UI')]] },
    text(Tag.PatientName, 'PN'),
    text(Tag.PatientId, 'LO'),
    text(Tag.IssuerOfPatientId, 'LO'),
    text(Tag.PatientBirthDate, 'DA'),
    text(Tag.PatientSex, 'CS'),
    text(Tag.StudyInstanceUid, 'UI'),
    text(Tag.RequestingPhysician, 'PN'),
    text(Tag.RequestedProcedureDescription, 'LO'),
    codeKeys(Tag.RequestedProcedureCodeSequence),
    text(Tag.AdmissionId, 'LO'),
    { tag: Tag.ScheduledProcedureStepSequence, vr: 'SQ', items: [step] },
    text(Tag.RequestedProcedureId, 'SH'),
  ];
}

/** YYYYMMDD of a local date. */
export function localDate(date: Date): string {
  return `${date.getFullYear()}${String(date.getMonth() + 1).padStart(2, '0')}${String(date.getDate()).padStart(2, '0')}`;
}

/** Returns the date range from `daysBefore` days before `now` to `daysAfter` days after it, in local dates. */
export function dateRange(now: Date, daysBefore: number, daysAfter: number): { fromDate: string; toDate: string } {
  const from = new Date(now.getFullYear(), now.getMonth(), now.getDate() - daysBefore);
  const to = new Date(now.getFullYear(), now.getMonth(), now.getDate() + daysAfter);
  return { fromDate: localDate(from), toDate: localDate(to) };
}
