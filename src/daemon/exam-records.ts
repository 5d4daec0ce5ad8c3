import { checkText } from '../dicom/values.js';
import type { StationConfig } from '../profile/schema.js';
import type { PerformedSeries, PerformedStep } from '../worklist/mpps-dataset.js';
import type { WorklistEntry } from '../worklist/worklist-entry.js';
import { captureKinds, type CaptureKind, type OpenExam } from './exam-store.js';

/** SeriesDescription of each capture kind, in the objects and in the MPPS. */
export const seriesDescriptions: Record<CaptureKind, string> = { still: 'Endoscopy stills', clip: 'Endoscopy clips' };

/** Builds what the exam's MPPS instance `sopInstanceUid` reports. */
export function performedStep(exam: OpenExam, sopInstanceUid: string, station: StationConfig): PerformedStep {
  return {
    sopInstanceUid,
    performedStepId: exam.examId,
    entry: exam.entry,
    studyInstanceUid: exam.studyInstanceUid,
    studyId: exam.studyId,
    station: { aeTitle: station.aeTitle, stationName: station.stationName },
    startedAt: new Date(exam.openedAt),
  };
}

/** Lists the series of the exam with the objects that reached the spool. */
export function performedSeries(exam: OpenExam, inSpool: (sopInstanceUid: string) => boolean): PerformedSeries[] {
  const result: PerformedSeries[] = [];
  for (const kind of captureKinds) {
    const series = exam.series[kind];
    if (!series) continue;
    const objects = series.objects
      .filter((object) => object.state === 'stored' || inSpool(object.sopInstanceUid))
      .map((object) => ({ sopClassUid: object.sopClassUid, sopInstanceUid: object.sopInstanceUid }));
    if (objects.length > 0) result.push({ seriesInstanceUid: series.seriesInstanceUid, seriesDescription: seriesDescriptions[kind], objects });
  }
  return result;
}

/** Counts the objects allocated in the exam, stored or not. */
export function objectCount(exam: OpenExam): number {
  return captureKinds.reduce((sum, kind) => sum + (exam.series[kind]?.objects.length ?? 0), 0);
}

/**
 * Returns an exam id not in `used`: E + local date and time, 16 characters,
 * because it is also the PerformedProcedureStepID (VR SH).
 */
export function newExamId(now: Date, used: ReadonlyArray<string | undefined>): string {
  const usedIds = new Set(used);
  for (let offset = 0; ; offset += 1) {
    const stamp = localStamp(new Date(now.getTime() + offset * 1_000));
    const id = `E${stamp.slice(0, 8)}-${stamp.slice(8)}`;
    if (!usedIds.has(id)) return id;
  }
}

/** Returns the StudyID (SH): the Requested Procedure ID when it fits, as IHE Scheduled Workflow suggests, else E + HHMMSS. */
export function studyIdOf(entry: WorklistEntry, openedAt: Date): string {
  try {
    if (entry.requestedProcedureId !== '') return checkText('StudyID', 'SH', entry.requestedProcedureId);
  } catch {
    // Too long or not a valid SH: a generated one is used.
  }
  return `E${localStamp(openedAt).slice(8)}`;
}

/** YYYYMMDDHHMMSS in local time. */
function localStamp(date: Date): string {
  const pad = (value: number): string => String(value).padStart(2, '0');
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
}
