import { rename } from 'node:fs/promises';
import path from 'node:path';
import { Low } from 'lowdb';
import { z } from 'zod';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { makeFolderDurably } from '../spool/durable-file.js';
import { DurableJsonFile } from '../state/durable-json-file.js';
import { worklistEntrySchema } from '../worklist/worklist-entry.js';

export const captureKinds = ['still', 'clip'] as const;
export type CaptureKind = (typeof captureKinds)[number];

export const examSources = ['barcode', 'mqtt', 'control', 'auto'] as const;
export type ExamSource = (typeof examSources)[number];

const examObjectSchema = z.strictObject({
  sopClassUid: z.string(),
  sopInstanceUid: z.string(),
  /** allocated: numbered before it was built; stored: in the spool. */
  state: z.enum(['allocated', 'stored']),
});

const examSeriesSchema = z.strictObject({
  seriesInstanceUid: z.string(),
  seriesNumber: z.number().int().nonnegative(),
  /** ISO time of the series' first capture. */
  createdAt: z.iso.datetime(),
  lastInstanceNumber: z.number().int().nonnegative(),
  objects: z.array(examObjectSchema),
});

const openExamSchema = z.strictObject({
  /** Internal id, safe to log and publish; also the PerformedProcedureStepID. */
  examId: z.string().max(16),
  source: z.enum(examSources),
  openedAt: z.iso.datetime(),
  /** ISO time of the last capture or command, for the idle end. */
  lastActivityAt: z.iso.datetime(),
  entryKey: z.string(),
  entry: worklistEntrySchema,
  studyInstanceUid: z.string(),
  studyId: z.string(),
  series: z.strictObject({ still: examSeriesSchema.nullable(), clip: examSeriesSchema.nullable() }),
  /** SOP Instance UID of the exam's MPPS, assigned at its first capture. */
  mppsUid: z.string().nullable(),
});

const endedExamSchema = z.strictObject({
  examId: z.string(),
  entryKey: z.string(),
  endedAt: z.iso.datetime(),
  outcome: z.enum(['completed', 'discontinued']),
  objects: z.number().int().nonnegative(),
});

const examStateSchema = z.strictObject({
  formatVersion: z.literal(1),
  open: openExamSchema.nullable(),
  /** The last exams ended, newest last, so that automatic selection does not pick them again. */
  ended: z.array(endedExamSchema),
});

export type OpenExam = z.infer<typeof openExamSchema>;
export type ExamSeries = z.infer<typeof examSeriesSchema>;
export type EndedExam = z.infer<typeof endedExamSchema>;
export type ExamStateData = z.infer<typeof examStateSchema>;

/** Ended exams remembered; a day of a busy room is a few dozen. */
export const MAX_ENDED_EXAMS = 200;

function emptyState(): ExamStateData {
  return { formatVersion: 1, open: null, ended: [] };
}

/**
 * The exam state in `<stateDirectory>/exam.json` (lowdb): the open exam with
 * its worklist entry, series and objects, and the exams ended lately. It is
 * a file of its own, beside the appliance state, because it contains patient
 * data and is checked against its schema when read. Every update is durable
 * before it resolves, so an exam survives a restart.
 */
export class ExamStore {
  private readonly db: Low<ExamStateData>;
  private queue: Promise<void> = Promise.resolve();

  private constructor(db: Low<ExamStateData>) {
    this.db = db;
  }

  /**
   * Opens the store. A file that cannot be read or fails its schema is moved
   * aside as `exam.json.invalid-<time>` and the box starts with no exam open,
   * so that capture goes on (into the unidentified-patient study).
   */
  static async open(stateDirectory: string, log: Logger): Promise<ExamStore> {
    const file = path.join(stateDirectory, 'exam.json');
    const examLog = log.child({ component: 'exam' });
    await makeFolderDurably(stateDirectory);
    const db = new Low<ExamStateData>(new DurableJsonFile(file), emptyState());
    let problem: string | undefined;
    try {
      await db.read();
      const parsed = examStateSchema.safeParse(db.data);
      if (parsed.success) db.data = parsed.data;
      else problem = `invalid at ${parsed.error.issues.map((issue) => issue.path.join('.')).join(', ')}`;
    } catch (error) {
      // A JSON.parse message quotes the file's text, which is patient data here.
      problem = error instanceof SyntaxError ? 'not valid JSON' : errorMessage(error);
    }
    if (problem !== undefined) {
      const aside = `${file}.invalid-${Date.now()}`;
      try {
        await rename(file, aside);
      } catch (error) {
        throw new EndocapError(ErrorCodes.EXAM_STATE_FAILED, `exam state ${file} is unusable (${problem}) and could not be moved aside: ${errorMessage(error)}`, { cause: error });
      }
      examLog.error({ file, movedTo: aside, problem }, 'exam state unusable, moved aside; starting with no exam open');
      db.data = emptyState();
    }
    if (db.data.open) examLog.info({ examId: db.data.open.examId }, 'open exam read from the state');
    return new ExamStore(db);
  }

  get data(): Readonly<ExamStateData> {
    return this.db.data;
  }

  /** Applies `change` and writes the state durably; calls run one after another. */
  update<T>(change: (data: ExamStateData) => T): Promise<T> {
    const run = this.queue.then(async () => {
      const result = change(this.db.data);
      try {
        await this.db.write();
      } catch (error) {
        throw new EndocapError(ErrorCodes.EXAM_STATE_FAILED, `exam state not written: ${errorMessage(error)}`, { cause: error, retryable: true });
      }
      return result;
    });
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}
