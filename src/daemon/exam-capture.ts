import type { VlEndoscopicSeries, VlEndoscopicStudy } from '../dicom/endoscopic-common.js';
import { checkDate, checkText, type TextVr } from '../dicom/values.js';
import { VIDEO_ENDOSCOPIC_IMAGE_STORAGE } from '../dicom/video-endoscopic.js';
import { VL_ENDOSCOPIC_IMAGE_STORAGE } from '../dicom/vl-endoscopic.js';
import type { AppState } from '../state/app-state.js';
import type { WorklistEntry } from '../worklist/worklist-entry.js';
import type { CaptureKind } from './exam-store.js';
import { allocateUnidentifiedSlot } from './unidentified-study.js';

export const sopClassOfKind: Record<CaptureKind, string> = {
  still: VL_ENDOSCOPIC_IMAGE_STORAGE,
  clip: VIDEO_ENDOSCOPIC_IMAGE_STORAGE,
};

/** Destination of one captured object: its study, series, numbers and exam. */
export interface CaptureSlot {
  /** Internal id of the exam the object belongs to; absent in the unidentified-patient study. */
  examId?: string;
  sopInstanceUid: string;
  study: VlEndoscopicStudy;
  series: VlEndoscopicSeries;
  instanceNumber: number;
  /** Returns the built object with the exam's attributes added; unchanged outside an exam. */
  finish(part10: Buffer): Buffer;
  /** Records that the object is durable in the spool. */
  stored(): Promise<void>;
  /** Tells the exam that this capture is over, stored or failed; ending an exam waits for it. Safe to call twice. */
  settle(): void;
}

/** Hands out capture slots: in the open exam, or in the unidentified-patient study. */
export interface CaptureContext {
  allocate(kind: CaptureKind, at: Date): Promise<CaptureSlot>;
}

export interface UnidentifiedContextOptions {
  state: AppState;
  boxId: string;
  stationName: string;
  newUid: () => string;
  newStudyAfterIdleMs: number;
}

/** Slots in the unidentified-patient study (docs/unidentified-patient.md), as used while no exam is open. */
export function unidentifiedCaptureContext(options: UnidentifiedContextOptions): CaptureContext {
  return {
    async allocate(_kind, at) {
      const slot = await allocateUnidentifiedSlot(options, at);
      return {
        sopInstanceUid: options.newUid(),
        study: {
          studyInstanceUid: slot.study.studyInstanceUid,
          studyId: slot.study.studyId,
          accessionNumber: '',
          studyDate: new Date(slot.study.startedAt),
          patientName: slot.study.patientName,
          patientId: slot.study.patientId,
        },
        series: { seriesInstanceUid: slot.study.seriesInstanceUid, seriesNumber: slot.study.seriesNumber, seriesDate: new Date(slot.study.startedAt) },
        instanceNumber: slot.instanceNumber,
        finish: (part10) => part10,
        stored: () => Promise.resolve(),
        settle: () => undefined,
      };
    },
  };
}

/** Returns `context`, or the unidentified-patient context built from the profile when it is absent. */
export function captureContextOrUnidentified(
  context: CaptureContext | undefined,
  options: { state: AppState; boxId: string; newUid: () => string; profile: { station: { stationName: string }; unidentifiedPatient: { newStudyAfterIdleMinutes: number } } },
): CaptureContext {
  return (
    context ??
    unidentifiedCaptureContext({
      state: options.state,
      boxId: options.boxId,
      stationName: options.profile.station.stationName,
      newUid: options.newUid,
      newStudyAfterIdleMs: options.profile.unidentifiedPatient.newStudyAfterIdleMinutes * 60_000,
    })
  );
}

/**
 * Returns the study fields the object builder writes, taken from the worklist entry.
 * A value the builder would reject (too long for its VR in UTF-8 bytes, or an
 * invalid date) is left empty here: the exam attributes added afterwards carry
 * every value exactly as received.
 */
export function builderStudy(entry: WorklistEntry, exam: { studyInstanceUid: string; studyId: string; openedAt: string }): VlEndoscopicStudy {
  const study: VlEndoscopicStudy = {
    studyInstanceUid: exam.studyInstanceUid,
    studyId: exam.studyId,
    accessionNumber: accepted('AccessionNumber', 'SH', entry.accessionNumber),
    studyDate: new Date(exam.openedAt),
    patientName: accepted('PatientName', 'PN', entry.patientName),
    patientId: accepted('PatientID', 'LO', entry.patientId),
    referringPhysicianName: accepted('ReferringPhysicianName', 'PN', entry.referringPhysicianName),
  };
  if (entry.patientSex === 'M' || entry.patientSex === 'F' || entry.patientSex === 'O') study.patientSex = entry.patientSex;
  if (entry.patientBirthDate !== '') {
    try {
      study.patientBirthDate = checkDate('PatientBirthDate', entry.patientBirthDate);
    } catch {
      // Left empty: an invalid date from the worklist is not copied into objects.
    }
  }
  return study;
}

function accepted(keyword: string, vr: TextVr, value: string): string {
  try {
    return checkText(keyword, vr, value);
  } catch {
    return '';
  }
}
