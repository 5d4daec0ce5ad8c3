import { EndocapError, ErrorCodes } from '../errors.js';
import type { StationConfig } from '../profile/schema.js';
import { dcmjs, type DcmjsDataset, type DcmjsElement } from './dcmjs.js';
import { isValidUid } from './uid.js';
import {
  checkDate,
  checkText,
  formatDate,
  formatDateTime,
  formatTime,
  formatTimezoneOffset,
  isNonAscii,
  UTF8_CHARACTER_SET,
  type TextVr,
} from './values.js';

/**
 * Modules shared by the VL Endoscopic Image and the Video Endoscopic Image
 * (PS3.3 A.32.4 and A.32.5): Patient, General Study, General Series, General
 * Equipment, General Image, Acquisition Context and SOP Common, and the File
 * Meta Information.
 */

/** Identifies endocap as the writer of a file; a fixed UUID-derived UID (ISO/IEC 9834-8, root 2.25). */
export const IMPLEMENTATION_CLASS_UID = '2.25.174283778762569116591965454655699947168';

export const MANUFACTURER = 'endocap';

export interface VlEndoscopicStation extends StationConfig {
  deviceSerialNumber: string;
  softwareVersion: string;
  /** ManufacturerModelName (0008,1090); defaults to "endocap". */
  modelName?: string;
}

export interface VlEndoscopicStudy {
  studyInstanceUid: string;
  studyId: string;
  accessionNumber: string;
  studyDate: Date;
  /** PatientName in DICOM PN form, such as "Family^Given". */
  patientName: string;
  patientId: string;
  /** PatientBirthDate as DICOM DA (YYYYMMDD), as received from the worklist. */
  patientBirthDate?: string;
  patientSex?: 'M' | 'F' | 'O';
  /** ReferringPhysicianName in DICOM PN form. */
  referringPhysicianName?: string;
}

export interface VlEndoscopicSeries {
  seriesInstanceUid: string;
  seriesNumber: number;
  seriesDate: Date;
}

/** A coded anatomic region, such as SCT 71854001 "Colon". */
export interface AnatomicRegion {
  codeValue: string;
  codingSchemeDesignator: string;
  codeMeaning: string;
  /**
   * True for a paired structure such as kidney (SCT 64033007), which then needs
   * Laterality. dciodvfy judges this from the code: it treats lung (39607008) as
   * unpaired and left lung (44029006) as needing Laterality.
   */
  paired: boolean;
}

/** Input fields every endoscopic image object has. */
export interface EndoscopicCommonInput {
  width: number;
  height: number;
  acquiredAt: Date;
  sopInstanceUid: string;
  station: VlEndoscopicStation;
  study: VlEndoscopicStudy;
  series: VlEndoscopicSeries;
  instanceNumber: number;
  /** Region examined; when absent the region, and so whether Laterality applies, is unknown. */
  anatomicRegion?: AnatomicRegion;
  /** Side of a paired body part; left empty when unknown. */
  laterality?: 'R' | 'L';
  /**
   * BurnedInAnnotation (0028,0301): YES when the picture may show text such as
   * the patient's name, NO only when masking removed all of it. Defaults to YES,
   * the safe value when nothing is known.
   */
  burnedInAnnotation?: 'YES' | 'NO';
}

/** Largest value of an IS attribute (PS3.5 6.2: a signed 32-bit integer). */
const MAX_INTEGER_STRING = 2 ** 31 - 1;

/**
 * Returns the elements of the shared modules, checked against their VRs.
 * Laterality (0020,0060) is Type 2C: required for a paired body part. It is left
 * out for an unpaired anatomic region, and written (empty when `laterality` is not
 * given) for a paired region or when no region is known. An empty Laterality means
 * "unknown", and dciodvfy reports a warning for it, not an error.
 */
export function commonElements(input: EndoscopicCommonInput, sopClassUid: string): DcmjsDataset {
  checkCommonInput(input);
  const { station, study, series } = input;

  const text: Array<[string, string, TextVr, string]> = [
    ['00080050', 'AccessionNumber', 'SH', study.accessionNumber],
    ['00080070', 'Manufacturer', 'LO', MANUFACTURER],
    ['00080080', 'InstitutionName', 'LO', station.institutionName],
    ['00080090', 'ReferringPhysicianName', 'PN', study.referringPhysicianName ?? ''],
    ['00081010', 'StationName', 'SH', station.stationName],
    ['00081040', 'InstitutionalDepartmentName', 'LO', station.departmentName],
    ['00081090', 'ManufacturerModelName', 'LO', station.modelName ?? MANUFACTURER],
    ['00100010', 'PatientName', 'PN', study.patientName],
    ['00100020', 'PatientID', 'LO', study.patientId],
    ['00100040', 'PatientSex', 'CS', study.patientSex ?? ''],
    ['00181000', 'DeviceSerialNumber', 'LO', station.deviceSerialNumber],
    ['00181020', 'SoftwareVersions', 'LO', station.softwareVersion],
    ['00200010', 'StudyID', 'SH', study.studyId],
  ];

  const dataset: DcmjsDataset = {};
  for (const [tag, keyword, vr, value] of text) {
    dataset[tag] = element(vr, checkText(keyword, vr, value));
  }
  Object.assign(dataset, {
    // SOP Common
    '00080012': element('DA', formatDate(input.acquiredAt)),
    '00080013': element('TM', formatTime(input.acquiredAt)),
    '00080016': element('UI', sopClassUid),
    '00080018': element('UI', input.sopInstanceUid),
    '00080201': element('SH', formatTimezoneOffset(input.acquiredAt)),
    // Patient
    '00100030': element('DA', study.patientBirthDate ?? ''),
    // General Study
    '0020000D': element('UI', study.studyInstanceUid),
    '00080020': element('DA', formatDate(study.studyDate)),
    '00080030': element('TM', formatTime(study.studyDate)),
    // General Series
    '00080060': element('CS', 'ES'),
    '0020000E': element('UI', series.seriesInstanceUid),
    '00200011': element('IS', series.seriesNumber),
    '00080021': element('DA', formatDate(series.seriesDate)),
    '00080031': element('TM', formatTime(series.seriesDate)),
    // General Image
    '00080008': element('CS', 'ORIGINAL', 'PRIMARY'),
    '00200013': element('IS', input.instanceNumber),
    '00200020': element('CS'),
    '00080023': element('DA', formatDate(input.acquiredAt)),
    '00080033': element('TM', formatTime(input.acquiredAt)),
    '0008002A': element('DT', formatDateTime(input.acquiredAt)),
    // The tower's video output carries text such as patient name and time,
    // unless the profile's masks remove it.
    '00280301': element('CS', input.burnedInAnnotation ?? 'YES'),
    // Acquisition Context: Type 2, no context items are recorded.
    '00400555': { vr: 'SQ', Value: [] },
    ...anatomyElements(input),
  } satisfies DcmjsDataset);
  return dataset;
}

/** File Meta Information (PS3.10 7.1). */
export function fileMetaElements(sopClassUid: string, sopInstanceUid: string, transferSyntaxUid: string, station: VlEndoscopicStation): DcmjsDataset {
  return {
    '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] },
    '00020002': element('UI', sopClassUid),
    '00020003': element('UI', sopInstanceUid),
    '00020010': element('UI', transferSyntaxUid),
    '00020012': element('UI', IMPLEMENTATION_CLASS_UID),
    '00020013': element('SH', implementationVersionName(station.softwareVersion)),
    '00020016': element('AE', checkText('SourceApplicationEntityTitle', 'AE', station.aeTitle)),
  };
}

/** Declares UTF-8 when any text is non-ASCII: dcmjs writes every string as UTF-8. */
export function declareCharacterSet(dataset: DcmjsDataset): void {
  if (containsNonAscii(dataset)) dataset['00080005'] = element('CS', UTF8_CHARACTER_SET);
}

export function element(vr: string, ...values: Array<string | number>): DcmjsElement {
  return { vr, Value: values.filter((value) => value !== '') };
}

export function writePart10(meta: DcmjsDataset, dataset: DcmjsDataset): Buffer {
  try {
    const dicomDict = new dcmjs.data.DicomDict(meta);
    dicomDict.dict = dataset;
    // One fragment per frame: some readers expect a JPEG frame unsplit, and dcmjs
    // then writes a Basic Offset Table with the single entry 0.
    return Buffer.from(dicomDict.write({ fragmentMultiframe: false, allowInvalidVRLength: false }));
  } catch (error) {
    // dcmjs messages can quote attribute values, so only its error class is kept.
    const kind = error instanceof Error ? error.name : typeof error;
    throw new EndocapError(ErrorCodes.DICOM_BUILD_FAILED, `dcmjs failed to write the object (${kind})`);
  }
}

function anatomyElements(input: EndoscopicCommonInput): DcmjsDataset {
  const region = input.anatomicRegion;
  if (region === undefined) return { '00200060': element('CS', input.laterality ?? '') };

  const item: DcmjsDataset = {
    '00080102': element('SH', checkText('CodingSchemeDesignator', 'SH', region.codingSchemeDesignator)),
    '00080104': element('LO', checkText('CodeMeaning', 'LO', region.codeMeaning)),
  };
  // Code values longer than 16 characters go to LongCodeValue (PS3.3 8.8).
  if (region.codeValue.length > 16) {
    item['00080119'] = element('UC', checkText('LongCodeValue', 'UC', region.codeValue));
  } else {
    item['00080100'] = element('SH', checkText('CodeValue', 'SH', region.codeValue));
  }
  const elements: DcmjsDataset = { '00082218': { vr: 'SQ', Value: [item] } };

  if (region.paired) {
    elements['00200060'] = element('CS', input.laterality ?? '');
  } else if (input.laterality !== undefined) {
    throw new EndocapError(ErrorCodes.DICOM_BUILD_FAILED, 'invalid Laterality: the anatomic region is not a paired body part');
  }
  return elements;
}

function containsNonAscii(dataset: DcmjsDataset): boolean {
  return Object.values(dataset).some((entry) =>
    (entry.Value ?? []).some((value) => {
      if (typeof value === 'string') return isNonAscii(value);
      if (entry.vr === 'SQ') return containsNonAscii(value as DcmjsDataset);
      return false;
    }),
  );
}

function checkCommonInput(input: EndoscopicCommonInput): void {
  const fail = (message: string): never => {
    throw new EndocapError(ErrorCodes.DICOM_BUILD_FAILED, message);
  };
  const uids: Array<[string, string]> = [
    ['SOPInstanceUID', input.sopInstanceUid],
    ['StudyInstanceUID', input.study.studyInstanceUid],
    ['SeriesInstanceUID', input.series.seriesInstanceUid],
  ];
  for (const [keyword, uid] of uids) {
    if (!isValidUid(uid)) fail(`invalid ${keyword}: expected a UID of at most 64 digits and dots`);
  }
  for (const [keyword, value] of [['Rows', input.height], ['Columns', input.width]] as const) {
    if (!Number.isInteger(value) || value < 1 || value > 0xffff) fail(`invalid ${keyword} ${value}: expected 1 to 65535`);
  }
  for (const [keyword, value] of [['SeriesNumber', input.series.seriesNumber], ['InstanceNumber', input.instanceNumber]] as const) {
    if (!Number.isInteger(value) || value < 0 || value > MAX_INTEGER_STRING) fail(`invalid ${keyword} ${value}: expected an integer from 0 to ${MAX_INTEGER_STRING}`);
  }
  for (const [keyword, date] of [['AcquisitionDateTime', input.acquiredAt], ['StudyDate', input.study.studyDate], ['SeriesDate', input.series.seriesDate]] as const) {
    if (Number.isNaN(date.getTime())) fail(`invalid ${keyword}: not a valid date`);
  }
  if (input.study.patientBirthDate !== undefined && input.study.patientBirthDate !== '') {
    checkDate('PatientBirthDate', input.study.patientBirthDate);
  }
}

function implementationVersionName(softwareVersion: string): string {
  const name = `ENDOCAP_${softwareVersion}`;
  return name.length <= 16 && /^[\x20-\x5b\x5d-\x7e]+$/.test(name) ? name : 'ENDOCAP';
}
