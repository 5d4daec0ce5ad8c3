import { z } from 'zod';
import { decodeDefaultRepertoire, TextDecoderForDataset, type CharsetProblem } from './character-sets.js';
import { findElement, type RawElement } from './dataset-reader.js';
import { characterSetVrs, Tag } from './tags.js';

const codedEntrySchema = z.strictObject({
  codeValue: z.string(),
  codingSchemeDesignator: z.string(),
  codingSchemeVersion: z.string(),
  codeMeaning: z.string(),
});

const sopReferenceSchema = z.strictObject({ sopClassUid: z.string(), sopInstanceUid: z.string() });

const scheduledStepSchema = z.strictObject({
  id: z.string(),
  description: z.string(),
  modality: z.string(),
  stationAeTitle: z.string(),
  stationName: z.string(),
  location: z.string(),
  /** DA, YYYYMMDD or empty. */
  startDate: z.string(),
  /** TM, HHMM[SS[.F]] or empty. */
  startTime: z.string(),
  performingPhysicianName: z.string(),
  protocolCodes: z.array(codedEntrySchema),
});

/**
 * One scheduled procedure step of the Modality Worklist (PS3.4 K.6.1.2.2),
 * as this box uses it. Text is decoded to Unicode with the character set of
 * the response it came in. Every field is patient data or close to it: none
 * of it may reach a log line, an error message or MQTT.
 */
export const worklistEntrySchema = z.strictObject({
  patientName: z.string(),
  patientId: z.string(),
  issuerOfPatientId: z.string(),
  /** DA as received, YYYYMMDD or empty. */
  patientBirthDate: z.string(),
  patientSex: z.string(),
  accessionNumber: z.string(),
  /** Empty when the worklist sent none; the exam then generates one. */
  studyInstanceUid: z.string(),
  referringPhysicianName: z.string(),
  requestingPhysician: z.string(),
  admissionId: z.string(),
  requestedProcedureId: z.string(),
  requestedProcedureDescription: z.string(),
  requestedProcedureCodes: z.array(codedEntrySchema),
  referencedStudies: z.array(sopReferenceSchema),
  step: scheduledStepSchema,
});

export type WorklistEntry = z.infer<typeof worklistEntrySchema>;
export type ScheduledStep = WorklistEntry['step'];
export type CodedEntry = z.infer<typeof codedEntrySchema>;
export type SopReference = z.infer<typeof sopReferenceSchema>;

/** Something unusual in a worklist response; never carries a value. */
export type EntryWarning =
  | CharsetProblem
  /** Scheduled step attributes came at the top level instead of inside ScheduledProcedureStepSequence. */
  | 'step-attributes-at-top-level'
  /** No ScheduledProcedureStepSequence and no step attributes at all. */
  | 'no-scheduled-step';

export interface ParsedResponse {
  /** One entry per item of ScheduledProcedureStepSequence. */
  entries: WorklistEntry[];
  warnings: EntryWarning[];
}

/** Step attributes that some servers put at the top level of the response. */
const stepTags = [
  Tag.Modality,
  Tag.ScheduledStationAeTitle,
  Tag.ScheduledProcedureStepStartDate,
  Tag.ScheduledProcedureStepStartTime,
  Tag.ScheduledPerformingPhysicianName,
  Tag.ScheduledProcedureStepDescription,
  Tag.ScheduledProtocolCodeSequence,
  Tag.ScheduledProcedureStepId,
  Tag.ScheduledStationName,
  Tag.ScheduledProcedureStepLocation,
];

/**
 * Turns one C-FIND match into worklist entries. `assumedCharacterSet` is
 * used when the match declares no SpecificCharacterSet.
 */
export function parseWorklistResponse(elements: RawElement[], assumedCharacterSet?: string): ParsedResponse {
  const characterSet = findElement(elements, Tag.SpecificCharacterSet);
  const terms = characterSet ? decodeDefaultRepertoire(characterSet.value).split('\\') : [];
  const decoder = new TextDecoderForDataset(terms, assumedCharacterSet);
  const warnings = new Set<EntryWarning>();
  const text = textReader(decoder, warnings);

  const top = (tag: number): string => text(findElement(elements, tag));
  const base: Omit<WorklistEntry, 'step'> = {
    patientName: top(Tag.PatientName),
    patientId: top(Tag.PatientId),
    issuerOfPatientId: top(Tag.IssuerOfPatientId),
    patientBirthDate: top(Tag.PatientBirthDate),
    patientSex: top(Tag.PatientSex),
    accessionNumber: top(Tag.AccessionNumber),
    studyInstanceUid: top(Tag.StudyInstanceUid),
    referringPhysicianName: top(Tag.ReferringPhysicianName),
    requestingPhysician: top(Tag.RequestingPhysician),
    admissionId: top(Tag.AdmissionId),
    requestedProcedureId: top(Tag.RequestedProcedureId),
    requestedProcedureDescription: top(Tag.RequestedProcedureDescription),
    requestedProcedureCodes: codes(items(elements, Tag.RequestedProcedureCodeSequence), text),
    // A server may echo the query's empty item back when it has no reference.
    referencedStudies: items(elements, Tag.ReferencedStudySequence)
      .map((item) => ({
        sopClassUid: text(findElement(item, Tag.ReferencedSopClassUid)),
        sopInstanceUid: text(findElement(item, Tag.ReferencedSopInstanceUid)),
      }))
      .filter((reference) => reference.sopInstanceUid !== ''),
  };

  const stepItems = items(elements, Tag.ScheduledProcedureStepSequence);
  const topLevelStep = stepTags.some((tag) => findElement(elements, tag) !== undefined);
  if (topLevelStep) warnings.add('step-attributes-at-top-level');
  if (stepItems.length === 0 && !topLevelStep) warnings.add('no-scheduled-step');

  // Attributes inside the item win; those only at the top level fill the gaps.
  const sources = stepItems.length > 0 ? stepItems : [[]];
  const entries = sources.map((item) => ({ ...base, step: readStep(item, elements, text) }));
  return { entries, warnings: [...warnings] };
}

type TextReader = (element: RawElement | undefined) => string;

/** Decodes values with the data set's character set; trailing padding (spaces, NUL) is dropped. */
function textReader(decoder: TextDecoderForDataset, warnings: Set<EntryWarning>): TextReader {
  return (element) => {
    if (element === undefined || element.vr === 'SQ') return '';
    let value: string;
    if (characterSetVrs.has(element.vr)) {
      const decoded = decoder.decode(element.value);
      for (const problem of decoded.problems) warnings.add(problem);
      value = decoded.text;
    } else {
      value = decodeDefaultRepertoire(element.value);
    }
    return value.replace(/[ \0]+$/, '');
  };
}

function items(elements: RawElement[], tag: number): RawElement[][] {
  return findElement(elements, tag)?.items ?? [];
}

function readStep(item: RawElement[], top: RawElement[], text: TextReader): ScheduledStep {
  const value = (tag: number): string => text(findElement(item, tag) ?? findElement(top, tag));
  const protocolItems = findElement(item, Tag.ScheduledProtocolCodeSequence)?.items ?? items(top, Tag.ScheduledProtocolCodeSequence);
  return {
    id: value(Tag.ScheduledProcedureStepId),
    description: value(Tag.ScheduledProcedureStepDescription),
    modality: value(Tag.Modality),
    stationAeTitle: value(Tag.ScheduledStationAeTitle).trim(),
    stationName: value(Tag.ScheduledStationName),
    location: value(Tag.ScheduledProcedureStepLocation),
    startDate: value(Tag.ScheduledProcedureStepStartDate).trim(),
    startTime: value(Tag.ScheduledProcedureStepStartTime).trim(),
    performingPhysicianName: value(Tag.ScheduledPerformingPhysicianName),
    protocolCodes: codes(protocolItems, text),
  };
}

function codes(codeItems: RawElement[][], text: TextReader): CodedEntry[] {
  const all = codeItems.map((item) => ({
    codeValue: text(findElement(item, Tag.CodeValue) ?? findElement(item, Tag.LongCodeValue)),
    codingSchemeDesignator: text(findElement(item, Tag.CodingSchemeDesignator)),
    codingSchemeVersion: text(findElement(item, Tag.CodingSchemeVersion)),
    codeMeaning: text(findElement(item, Tag.CodeMeaning)),
  }));
  return all.filter((code) => code.codeValue !== '' || code.codeMeaning !== '');
}

/**
 * Key of an entry for telling entries apart across queries: Study Instance
 * UID, step id and accession number. Stored only on this box.
 */
export function entryKey(entry: WorklistEntry): string {
  return JSON.stringify([entry.studyInstanceUid, entry.step.id, entry.accessionNumber, entry.patientId]);
}
