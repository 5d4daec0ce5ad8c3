import type { AppState, UnidentifiedStudy } from '../state/app-state.js';

export interface UnidentifiedStudyOptions {
  state: AppState;
  boxId: string;
  stationName: string;
  newUid: () => string;
  /** A capture after this much idle time opens a new study (a new patient is likely). */
  newStudyAfterIdleMs: number;
}

/** Reference to one instance slot in the unidentified-patient study. */
export interface InstanceSlot {
  study: UnidentifiedStudy;
  instanceNumber: number;
}

/**
 * Allocates the study, series and instance number for a still taken while no
 * procedure is selected. A new study starts on a new local day or after the
 * configured idle time; otherwise stills join the open one. The allocation is
 * durable before it is returned, so a restart never reuses an instance number.
 */
export async function allocateUnidentifiedSlot(options: UnidentifiedStudyOptions, now: Date): Promise<InstanceSlot> {
  return options.state.update((data) => {
    let study = data.unidentifiedStudy;
    if (!study || startsNewStudy(study, now, options.newStudyAfterIdleMs)) {
      study = openStudy(options, now);
    }
    study.lastInstanceNumber += 1;
    study.lastCaptureAt = now.toISOString();
    data.unidentifiedStudy = study;
    return { study: { ...study }, instanceNumber: study.lastInstanceNumber };
  });
}

function startsNewStudy(study: UnidentifiedStudy, now: Date, idleMs: number): boolean {
  const last = new Date(study.lastCaptureAt);
  if (localDate(last) !== localDate(now)) return true;
  return now.getTime() - last.getTime() > idleMs;
}

/**
 * PatientID `UNID-<box id>-<local date and time the study opened>`, PatientName
 * `UNIDENTIFIED^<station name>`, StudyID `U` + HHMMSS: unique per box and easy
 * to find in a PACS worklist of orphans.
 */
function openStudy(options: UnidentifiedStudyOptions, now: Date): UnidentifiedStudy {
  const stamp = `${localDate(now)}${localTime(now)}`;
  return {
    patientId: `UNID-${options.boxId.slice(0, 40)}-${stamp}`,
    patientName: `UNIDENTIFIED^${options.stationName}`,
    studyInstanceUid: options.newUid(),
    studyId: `U${localTime(now)}`,
    seriesInstanceUid: options.newUid(),
    seriesNumber: 1,
    startedAt: now.toISOString(),
    lastCaptureAt: now.toISOString(),
    lastInstanceNumber: 0,
  };
}

function localDate(date: Date): string {
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}`;
}

function localTime(date: Date): string {
  return `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
}

function pad(value: number): string {
  return String(value).padStart(2, '0');
}
