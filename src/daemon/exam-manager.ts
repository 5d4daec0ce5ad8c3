import { EventEmitter } from 'node:events';
import { sleep } from '../backoff.js';
import { isValidUid } from '../dicom/uid.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { ExamConfig, StationConfig } from '../profile/schema.js';
import { mppsCreateAttributes, mppsFinalAttributes, type DiscontinuationReason, type PerformedSeries } from '../worklist/mpps-dataset.js';
import type { MppsQueue } from '../worklist/mpps-queue.js';
import { examObjectAttributes, spliceElements } from '../worklist/object-attributes.js';
import { entryKey, type WorklistEntry } from '../worklist/worklist-entry.js';
import { matchEntries, scheduledInWindow, type MatchField } from '../worklist/worklist-match.js';
import { builderStudy, sopClassOfKind, type CaptureContext, type CaptureSlot } from './exam-capture.js';
import { newExamId, objectCount, performedSeries, performedStep, seriesDescriptions, studyIdOf } from './exam-records.js';
import { captureKinds, MAX_ENDED_EXAMS, type CaptureKind, type ExamSource, type ExamStore, type OpenExam } from './exam-store.js';

/** Origin of the end of an exam. */
export type EndSource = 'pedal' | 'mqtt' | 'control' | 'idle' | 'selection';
export type ExamOutcome = 'completed' | 'discontinued';

/** The worklist as the exam manager uses it. */
export interface WorklistLookup {
  readonly entries: readonly WorklistEntry[];
  /** Queries the server now; a failure leaves `entries` as they were. */
  refresh(): Promise<unknown>;
}

export interface ExamManagerOptions {
  config: ExamConfig;
  station: StationConfig;
  store: ExamStore;
  /** The worklist procedures are selected from; undefined when none is configured. */
  worklist: WorklistLookup | undefined;
  /** ScheduledStationAETitle automatic selection requires; undefined accepts every station. */
  stationAeTitle: string | undefined;
  /** Queue of MPPS messages and a way to wake its sender; undefined when no MPPS server is configured. */
  mpps: { queue: MppsQueue; wake: () => void } | undefined;
  /** Capture context used while no exam is open. */
  unidentified: CaptureContext;
  newUid: () => string;
  /** True when the spool has an object with this SOP Instance UID, to account for captures cut short by a crash. */
  inSpool: (sopInstanceUid: string) => boolean;
  /** Finishes captures in progress, such as a clip being recorded, before an exam ends. */
  beforeEnd?: () => Promise<void>;
  log: Logger;
  /** Clock in ms since the epoch; tests pass a fake one. */
  clock?: () => number;
}

interface ExamManagerEvents {
  examStarted: [{ examId: string; source: ExamSource }];
  examEnded: [{ examId: string; source: EndSource; outcome: ExamOutcome; objects: number }];
  /** A selection failed: no entry, several entries, or no worklist. Reasons name no patient data. */
  selectionFailed: [{ source: ExamSource; code: string; reason: string }];
}

export interface SelectResult {
  examId: string;
  /** True when the entry was already the open exam. */
  alreadyOpen: boolean;
  /** The exam that was open with another entry and was ended first. */
  endedExamId?: string;
}

export interface EndResult {
  examId: string;
  outcome: ExamOutcome;
  objects: number;
}

export interface ExamStatus {
  active: boolean;
  examId?: string;
  source?: ExamSource;
  openedAt?: string;
  stills: number;
  clips: number;
}

/** Maximum wait for captures in progress when an exam ends, in ms. */
const CAPTURE_SETTLE_MS = 15_000;

/** Maximum wait, in ms, for the worklist query made when a selection matches nothing, so that the caller gets a response in time. */
const REFRESH_ON_MISS_MS = 15_000;

/**
 * The exam lifecycle: selecting a worklist entry opens an exam, every capture
 * while it is open goes into its study (stills and clips in a series each),
 * and an operator, a pedal gesture or the idle timer ends it. The state is
 * durable after every change. With an MPPS server, the first capture queues
 * N-CREATE IN PROGRESS and the end queues N-SET COMPLETED, or DISCONTINUED
 * when nothing was captured or the operator requested it.
 */
export class ExamManager extends EventEmitter<ExamManagerEvents> implements CaptureContext {
  private readonly options: ExamManagerOptions;
  private readonly log: Logger;
  private readonly clock: () => number;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly capturesInProgress = new Set<Promise<void>>();
  private idleTimer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(options: ExamManagerOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'exam' });
    this.clock = options.clock ?? Date.now;
  }

  /** Restores an exam left open by the previous run and settles the captures it had in progress. */
  async start(): Promise<void> {
    this.running = true;
    const exam = this.options.store.data.open;
    if (!exam) return;
    const { recovered, dropped } = await this.options.store.update((data) => {
      const counts = { recovered: 0, dropped: 0 };
      for (const kind of captureKinds) {
        const series = data.open?.series[kind];
        if (!series) continue;
        series.objects = series.objects.filter((object) => {
          if (object.state === 'stored') return true;
          const present = this.options.inSpool(object.sopInstanceUid);
          if (present) {
            object.state = 'stored';
            counts.recovered += 1;
          } else counts.dropped += 1;
          return present;
        });
      }
      return counts;
    });
    const mpps = this.options.mpps;
    if (mpps && exam.mppsUid !== null && mpps.queue.get(exam.mppsUid) === undefined && objectCount(exam) > 0) {
      await mpps.queue.queueCreate(exam.mppsUid, exam.examId, mppsCreateAttributes(performedStep(exam, exam.mppsUid, this.options.station)));
      mpps.wake();
    }
    this.log.info({ examId: exam.examId, source: exam.source, objects: objectCount(exam), recovered, dropped }, 'exam continues after restart');
    this.scheduleIdleEnd();
  }

  /** Stops the idle timer; an open exam stays open for the next run. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.idleTimer);
    await this.chain.catch(() => undefined);
  }

  status(): ExamStatus {
    const exam = this.options.store.data.open;
    if (!exam) return { active: false, stills: 0, clips: 0 };
    return {
      active: true,
      examId: exam.examId,
      source: exam.source,
      openedAt: exam.openedAt,
      stills: exam.series.still?.objects.length ?? 0,
      clips: exam.series.clip?.objects.length ?? 0,
    };
  }

  /**
   * Opens an exam for the one worklist entry whose fields in `by` equal
   * `value`. With no match it queries the worklist once more. An exam open
   * with another entry is ended first. Throws EXAM_NO_MATCH, EXAM_AMBIGUOUS
   * or WORKLIST_NOT_CONFIGURED, whose messages hold no patient data.
   */
  async select(request: { value: string; by: readonly MatchField[]; source: ExamSource }): Promise<SelectResult> {
    let entry: WorklistEntry;
    try {
      entry = await this.findEntry(request.value, request.by);
    } catch (error) {
      const failure = error instanceof EndocapError ? error : new EndocapError(ErrorCodes.EXAM_NO_MATCH, errorMessage(error));
      this.log.warn({ source: request.source, code: failure.code, reason: failure.message }, 'procedure selection failed');
      this.emit('selectionFailed', { source: request.source, code: failure.code, reason: failure.message });
      throw failure;
    }

    const open = this.options.store.data.open;
    if (open && open.entryKey === entryKey(entry)) {
      await this.touch();
      this.log.info({ examId: open.examId, source: request.source }, 'procedure selected again, exam continues');
      return { examId: open.examId, alreadyOpen: true };
    }
    let endedExamId: string | undefined;
    if (open) endedExamId = (await this.end({ source: 'selection' })).examId;
    const examId = await this.exclusive(() => this.open(entry, request.source));
    return endedExamId === undefined ? { examId, alreadyOpen: false } : { examId, alreadyOpen: false, endedExamId };
  }

  /**
   * Ends the open exam: a clip being recorded is finished first and captures
   * in progress are waited for. Throws EXAM_NOT_OPEN when none is open.
   */
  async end(request: { source: EndSource; discontinue?: boolean; reason?: DiscontinuationReason }): Promise<EndResult> {
    if (!this.options.store.data.open) throw new EndocapError(ErrorCodes.EXAM_NOT_OPEN, 'no exam is open');
    try {
      await this.options.beforeEnd?.();
    } catch (error) {
      this.log.warn({ err: { message: errorMessage(error) } }, 'capture in progress not finished before the exam end');
    }
    await this.capturesSettled();
    return this.exclusive(() => this.finish(request));
  }

  /** Allocates the slot of a capture at `at`: in the open exam, or in the unidentified-patient study. */
  allocate(kind: CaptureKind, at: Date): Promise<CaptureSlot> {
    return this.exclusive(async () => {
      if (!this.options.store.data.open) await this.selectAutomatically(at).catch((error: unknown) => this.log.error({ err: { message: errorMessage(error) } }, 'automatic selection failed'));
      const exam = this.options.store.data.open;
      if (!exam) return this.options.unidentified.allocate(kind, at);
      try {
        return await this.allocateInExam(kind, at);
      } catch (error) {
        // The capture is kept rather than lost: it goes to the unidentified-patient study for reconciliation.
        this.log.error({ examId: exam.examId, err: { message: errorMessage(error) } }, 'capture not allocated in the exam, filed as unidentified');
        return this.options.unidentified.allocate(kind, at);
      }
    });
  }

  private async findEntry(value: string, by: readonly MatchField[]): Promise<WorklistEntry> {
    const worklist = this.options.worklist;
    if (!worklist) throw new EndocapError(ErrorCodes.WORKLIST_NOT_CONFIGURED, 'no worklist is configured on this box');
    const fieldNames = by.length === 1 && by[0] === 'accession-number' ? 'accession number' : by.map((field) => field.replace('-', ' ')).join(' or ');
    let match = matchEntries(worklist.entries, value, by);
    if (match.kind === 'none') {
      // The procedure may have been scheduled since the last query.
      const timeout = new AbortController();
      await Promise.race([worklist.refresh().catch(() => undefined), sleep(REFRESH_ON_MISS_MS, timeout.signal)]);
      timeout.abort();
      match = matchEntries(worklist.entries, value, by);
    }
    if (match.kind === 'one') return match.entry;
    if (match.kind === 'several') {
      throw new EndocapError(ErrorCodes.EXAM_AMBIGUOUS, `${match.count} worklist entries match the ${fieldNames}; select by a value that names one procedure, such as its accession number`);
    }
    throw new EndocapError(ErrorCodes.EXAM_NO_MATCH, `no worklist entry matches the ${fieldNames} among ${worklist.entries.length} entries`);
  }

  private async open(entry: WorklistEntry, source: ExamSource): Promise<string> {
    const now = new Date(this.clock());
    const examId = newExamId(now, [this.options.store.data.open?.examId, ...this.options.store.data.ended.map((ended) => ended.examId)]);
    let studyInstanceUid = entry.studyInstanceUid;
    if (!isValidUid(studyInstanceUid)) {
      studyInstanceUid = this.options.newUid();
      this.log.warn({ examId }, 'worklist entry has no valid Study Instance UID, one generated');
    }
    const exam: OpenExam = {
      examId,
      source,
      openedAt: now.toISOString(),
      lastActivityAt: now.toISOString(),
      entryKey: entryKey(entry),
      entry,
      studyInstanceUid,
      studyId: studyIdOf(entry, now),
      series: { still: null, clip: null },
      mppsUid: null,
    };
    await this.options.store.update((data) => {
      data.open = exam;
    });
    this.log.info({ examId, source }, 'exam started');
    this.emit('examStarted', { examId, source });
    this.scheduleIdleEnd();
    return examId;
  }

  private async selectAutomatically(at: Date): Promise<void> {
    const { config, worklist } = this.options;
    if (!config.autoSelect.enabled || !worklist) return;
    const match = scheduledInWindow(worklist.entries, {
      now: at,
      beforeMs: config.autoSelect.windowBeforeMinutes * 60_000,
      afterMs: config.autoSelect.windowAfterMinutes * 60_000,
      stationAeTitle: this.options.stationAeTitle,
      exclude: new Set(this.options.store.data.ended.map((ended) => ended.entryKey)),
    });
    if (match.kind === 'one') await this.open(match.entry, 'auto');
    else if (match.kind === 'several') this.log.info({ scheduled: match.count }, 'no automatic selection: several procedures scheduled now');
  }

  private async allocateInExam(kind: CaptureKind, at: Date): Promise<CaptureSlot> {
    const sopInstanceUid = this.options.newUid();
    const mppsEnabled = this.options.mpps !== undefined;
    const allocation = await this.options.store.update((data) => {
      const exam = data.open;
      if (!exam) throw new EndocapError(ErrorCodes.EXAM_NOT_OPEN, 'the exam ended during the capture');
      let series = exam.series[kind];
      if (!series) {
        const seriesNumber = Math.max(0, ...captureKinds.map((other) => exam.series[other]?.seriesNumber ?? 0)) + 1;
        series = { seriesInstanceUid: this.options.newUid(), seriesNumber, createdAt: at.toISOString(), lastInstanceNumber: 0, objects: [] };
        exam.series[kind] = series;
      }
      series.lastInstanceNumber += 1;
      series.objects.push({ sopClassUid: sopClassOfKind[kind], sopInstanceUid, state: 'allocated' });
      exam.lastActivityAt = new Date(Math.max(at.getTime(), Date.parse(exam.lastActivityAt))).toISOString();
      const firstCapture = mppsEnabled && exam.mppsUid === null;
      if (firstCapture) exam.mppsUid = this.options.newUid();
      return { exam: structuredClone(exam), series: { ...series }, instanceNumber: series.lastInstanceNumber, firstCapture };
    });
    const { exam, series, instanceNumber } = allocation;
    if (allocation.firstCapture) await this.queueCreate(exam);
    this.scheduleIdleEnd();

    let settle: () => void = () => undefined;
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    this.capturesInProgress.add(settled);
    void settled.then(() => this.capturesInProgress.delete(settled));

    const attributes = examObjectAttributes({
      entry: exam.entry,
      studyInstanceUid: exam.studyInstanceUid,
      seriesDescription: seriesDescriptions[kind],
      ...(exam.mppsUid === null ? {} : { mpps: { sopInstanceUid: exam.mppsUid, performedStepId: exam.examId, startedAt: new Date(exam.openedAt) } }),
    });
    return {
      examId: exam.examId,
      sopInstanceUid,
      study: builderStudy(exam.entry, exam),
      series: { seriesInstanceUid: series.seriesInstanceUid, seriesNumber: series.seriesNumber, seriesDate: new Date(series.createdAt) },
      instanceNumber,
      finish: (part10) => spliceElements(part10, attributes),
      stored: () => this.markStored(exam.examId, sopInstanceUid),
      settle,
    };
  }

  /** Marks an object stored. Never rejects: an object left allocated is found in the spool at the exam end. */
  private async markStored(examId: string, sopInstanceUid: string): Promise<void> {
    await this.options.store
      .update((data) => {
        if (data.open?.examId !== examId) return;
        for (const kind of captureKinds) {
          const object = data.open.series[kind]?.objects.find((candidate) => candidate.sopInstanceUid === sopInstanceUid);
          if (object) object.state = 'stored';
        }
      })
      .catch((error: unknown) => this.log.error({ examId, err: { message: errorMessage(error) } }, 'stored object not recorded in the exam state'));
  }

  /** Queues the N-CREATE of the exam's MPPS. A failure is logged; the exam end queues it again. */
  private async queueCreate(exam: OpenExam): Promise<void> {
    const mpps = this.options.mpps;
    if (!mpps || exam.mppsUid === null) return;
    try {
      await mpps.queue.queueCreate(exam.mppsUid, exam.examId, mppsCreateAttributes(performedStep(exam, exam.mppsUid, this.options.station)));
      mpps.wake();
    } catch (error) {
      this.log.error({ examId: exam.examId, err: { message: errorMessage(error) } }, 'MPPS N-CREATE not queued; queued again at the exam end');
    }
  }

  private async finish(request: { source: EndSource; discontinue?: boolean; reason?: DiscontinuationReason }): Promise<EndResult> {
    const exam = this.options.store.data.open;
    if (!exam) throw new EndocapError(ErrorCodes.EXAM_NOT_OPEN, 'no exam is open');
    const series = performedSeries(exam, this.options.inSpool);
    const objects = series.reduce((sum, performed) => sum + performed.objects.length, 0);
    const outcome: ExamOutcome = request.discontinue === true || objects === 0 ? 'discontinued' : 'completed';
    await this.queueFinal(exam, outcome, series, request.reason);

    await this.options.store.update((data) => {
      data.open = null;
      data.ended.push({ examId: exam.examId, entryKey: exam.entryKey, endedAt: new Date(this.clock()).toISOString(), outcome, objects });
      if (data.ended.length > MAX_ENDED_EXAMS) data.ended.splice(0, data.ended.length - MAX_ENDED_EXAMS);
    });
    clearTimeout(this.idleTimer);
    this.log.info({ examId: exam.examId, source: request.source, outcome, objects, reason: request.reason }, 'exam ended');
    this.emit('examEnded', { examId: exam.examId, source: request.source, outcome, objects });
    return { examId: exam.examId, outcome, objects };
  }

  /** Queues the final N-SET, and the N-CREATE before it when the exam had no capture. Throws when the queue cannot be written, leaving the exam open. */
  private async queueFinal(exam: OpenExam, outcome: ExamOutcome, series: PerformedSeries[], reason: DiscontinuationReason | undefined): Promise<void> {
    const mpps = this.options.mpps;
    if (!mpps) return;
    let mppsUid = exam.mppsUid;
    if (mppsUid === null) {
      // Recorded before queueing, so that a crash in between cannot create a second MPPS for the exam.
      const uid = this.options.newUid();
      await this.options.store.update((data) => {
        if (data.open) data.open.mppsUid = uid;
      });
      mppsUid = uid;
    }
    const step = performedStep(exam, mppsUid, this.options.station);
    await mpps.queue.queueCreate(mppsUid, exam.examId, mppsCreateAttributes(step));
    const status = outcome === 'completed' ? 'COMPLETED' : 'DISCONTINUED';
    await mpps.queue.queueFinal(mppsUid, status, mppsFinalAttributes(step, { status, endedAt: new Date(this.clock()), series, ...(reason ? { reason } : {}) }));
    mpps.wake();
  }

  private async capturesSettled(): Promise<void> {
    if (this.capturesInProgress.size === 0) return;
    const timeout = new AbortController();
    await Promise.race([Promise.all(this.capturesInProgress), sleep(CAPTURE_SETTLE_MS, timeout.signal)]);
    timeout.abort();
  }

  private async touch(): Promise<void> {
    const at = new Date(this.clock()).toISOString();
    await this.options.store.update((data) => {
      if (data.open) data.open.lastActivityAt = at;
    });
    this.scheduleIdleEnd();
  }

  private scheduleIdleEnd(): void {
    clearTimeout(this.idleTimer);
    const exam = this.options.store.data.open;
    if (!exam || !this.running) return;
    const idleMs = this.options.config.idleEndMinutes * 60_000;
    const dueInMs = Math.max(0, Date.parse(exam.lastActivityAt) + idleMs - this.clock());
    this.idleTimer = setTimeout(() => {
      const current = this.options.store.data.open;
      if (!current || current.examId !== exam.examId) return;
      if (Date.parse(current.lastActivityAt) + idleMs > this.clock()) {
        this.scheduleIdleEnd();
        return;
      }
      this.log.info({ examId: exam.examId, idleEndMinutes: this.options.config.idleEndMinutes }, 'exam idle, ending it');
      this.end({ source: 'idle' }).catch((error: unknown) => {
        this.log.error({ examId: exam.examId, err: { message: errorMessage(error) } }, 'idle exam not ended, retrying in a minute');
        this.idleTimer = setTimeout(() => this.scheduleIdleEnd(), 60_000);
        this.idleTimer.unref();
      });
    }, dueInMs);
    this.idleTimer.unref();
  }

  private exclusive<T>(action: () => Promise<T>): Promise<T> {
    const run = this.chain.then(action);
    this.chain = run.catch(() => undefined);
    return run;
  }
}
