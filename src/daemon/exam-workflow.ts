import path from 'node:path';
import { sleep } from '../backoff.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Profile } from '../profile/schema.js';
import type { AppState } from '../state/app-state.js';
import { Hl7OrderService } from '../hl7/hl7-order-service.js';
import type { CommandRegistry } from '../telemetry/commands.js';
import { BarcodeScanner } from '../worklist/barcode-scanner.js';
import { MppsQueue } from '../worklist/mpps-queue.js';
import { MppsSender } from '../worklist/mpps-sender.js';
import { WorklistService } from '../worklist/worklist-service.js';
import { unidentifiedCaptureContext, type CaptureContext } from './exam-capture.js';
import { registerExamCommands } from './exam-commands.js';
import { ExamManager, type WorklistLookup } from './exam-manager.js';
import { ExamStore } from './exam-store.js';

/** The part of telemetry the exam workflow reports to; the daemon's Telemetry has this shape. */
export interface ExamTelemetry {
  publishEvent(event: { type: 'exam-started' | 'exam-ended'; examId?: string; reason?: string }): void;
  alarms: {
    raise(id: string, severity: 'critical' | 'warning', reason: string): void;
    clear(id: string): void;
  };
  statusChanged(): void;
}

export interface ExamWorkflowOptions {
  profile: Profile;
  state: AppState;
  boxId: string;
  newUid: () => string;
  /** True when the spool has an object with this SOP Instance UID. */
  inSpool: (sopInstanceUid: string) => boolean;
  /** Finishes a clip being recorded before an exam ends. */
  beforeEnd?: () => Promise<void>;
  /** Telemetry, when the daemon has it; read at each report because it may start later. */
  telemetry: () => ExamTelemetry | undefined;
  log: Logger;
}

/** Fields of the daemon's telemetry status that the exam workflow provides. */
export interface ExamStatusInput {
  exam: { active: boolean };
  worklist?: { cacheAgeSeconds: number | null };
  barcodeReader?: { connected: boolean };
}

/**
 * Patient and procedure context, wired together: the worklist service, the
 * barcode scanner, the exam lifecycle and the MPPS queue and sender, with
 * their telemetry. Every part the profile does not configure is left out;
 * without a worklist, captures go to the unidentified-patient study as before.
 */
export class ExamWorkflow {
  readonly worklist: WorklistService | undefined;
  readonly scanner: BarcodeScanner | undefined;
  readonly mppsQueue: MppsQueue | undefined;
  readonly mppsSender: MppsSender | undefined;
  readonly hl7: Hl7OrderService | undefined;
  private manager: ExamManager | undefined;
  private store: ExamStore | undefined;
  private readonly options: ExamWorkflowOptions;
  private readonly log: Logger;
  private readonly unidentified: CaptureContext;

  constructor(options: ExamWorkflowOptions) {
    this.options = options;
    this.log = options.log.child({ component: 'exam' });
    const { profile } = options;
    this.unidentified = unidentifiedCaptureContext({
      state: options.state,
      boxId: options.boxId,
      stationName: profile.station.stationName,
      newUid: options.newUid,
      newStudyAfterIdleMs: profile.unidentifiedPatient.newStudyAfterIdleMinutes * 60_000,
    });
    if (profile.worklist) {
      this.worklist = new WorklistService({ config: profile.worklist, stationAeTitle: profile.station.aeTitle, stateDirectory: profile.stateDirectory, log: options.log });
    }
    if (profile.hl7) this.hl7 = new Hl7OrderService({ config: profile.hl7, stateDirectory: profile.stateDirectory, log: options.log });
    if (profile.exam.barcode) this.scanner = new BarcodeScanner({ config: profile.exam.barcode, log: options.log });
    if (profile.mpps) {
      this.mppsQueue = new MppsQueue({ directory: path.join(profile.stateDirectory, 'mpps'), log: options.log });
      this.mppsSender = new MppsSender({ config: profile.mpps, callingAeTitle: profile.mpps.callingAeTitle ?? profile.station.aeTitle, queue: this.mppsQueue, log: options.log });
    }
  }

  /** The capture context: the open exam, or the unidentified-patient study. */
  get captureContext(): CaptureContext {
    return this.manager ?? this.unidentified;
  }

  /** The exam lifecycle; undefined before start. */
  get exams(): ExamManager | undefined {
    return this.manager;
  }

  async start(): Promise<void> {
    const { profile } = this.options;
    const store = await ExamStore.open(profile.stateDirectory, this.options.log);
    this.store = store;
    await this.mppsQueue?.open();
    const mppsQueue = this.mppsQueue;
    const mppsSender = this.mppsSender;
    const worklistConfig = profile.worklist;
    this.manager = new ExamManager({
      config: profile.exam,
      station: profile.station,
      store,
      worklist: procedureLookup(this.worklist, this.hl7),
      stationAeTitle: worklistConfig?.matchStationAeTitle === false ? undefined : (worklistConfig?.stationAeTitle ?? profile.station.aeTitle),
      mpps: mppsQueue && mppsSender ? { queue: mppsQueue, wake: () => mppsSender.wake() } : undefined,
      unidentified: this.unidentified,
      newUid: this.options.newUid,
      inSpool: this.options.inSpool,
      ...(this.options.beforeEnd ? { beforeEnd: this.options.beforeEnd } : {}),
      log: this.options.log,
    });
    this.report();
    await this.worklist?.start();
    await this.hl7?.start();
    mppsSender?.start();
    await this.manager.start();
    await this.scanner?.start();
  }

  async stop(): Promise<void> {
    await this.scanner?.stop();
    await this.manager?.stop();
    await this.mppsSender?.stop();
    await this.hl7?.stop();
    await this.worklist?.stop();
  }

  /** Serves select-procedure and end-exam over the daemon's remote commands. */
  registerCommands(registry: CommandRegistry): void {
    if (this.manager && (this.worklist || this.hl7)) registerExamCommands(registry, this.manager);
  }

  statusInput(): ExamStatusInput {
    const input: ExamStatusInput = { exam: { active: this.manager?.status().active ?? false } };
    if (this.worklist) {
      const age = this.worklist.cacheAgeMs();
      input.worklist = { cacheAgeSeconds: age === undefined ? null : Math.round(age / 1_000) };
    }
    if (this.scanner) input.barcodeReader = { connected: this.scanner.status().connected };
    return input;
  }

  /** Connects events to logs and telemetry; every payload is internal ids, codes and counts. */
  private report(): void {
    const telemetry = this.options.telemetry;
    const manager = this.manager;

    manager?.on('examStarted', ({ examId, source }) => {
      telemetry()?.publishEvent({ type: 'exam-started', examId, reason: `selected by ${source}` });
      telemetry()?.alarms.clear('exam-selection-failed');
      telemetry()?.statusChanged();
    });
    manager?.on('examEnded', ({ examId, source, outcome, objects }) => {
      telemetry()?.publishEvent({ type: 'exam-ended', examId, reason: `${outcome} (${objects} objects), ended by ${source}` });
      telemetry()?.statusChanged();
    });
    manager?.on('selectionFailed', ({ source, code, reason }) => {
      telemetry()?.alarms.raise('exam-selection-failed', 'warning', `${source}: ${code}: ${reason}`);
    });

    const staleAfterMs = (this.options.profile.worklist?.staleAfterMinutes ?? 60) * 60_000;
    this.worklist?.on('worklistUpdated', () => {
      telemetry()?.alarms.clear('worklist-unreachable');
      telemetry()?.alarms.clear('worklist-stale');
      telemetry()?.statusChanged();
    });
    this.worklist?.on('worklistFailed', ({ code, reason, cacheAgeMs }) => {
      telemetry()?.alarms.raise('worklist-unreachable', 'warning', `${code}: ${reason}`);
      if (cacheAgeMs === undefined || cacheAgeMs > staleAfterMs) {
        const age = cacheAgeMs === undefined ? 'no worklist received yet' : `worklist cache is ${Math.round(cacheAgeMs / 60_000)} minutes old`;
        telemetry()?.alarms.raise('worklist-stale', 'warning', age);
      }
      telemetry()?.statusChanged();
    });

    this.scanner?.on('connected', () => {
      telemetry()?.alarms.clear('barcode-reader-disconnected');
      telemetry()?.statusChanged();
    });
    this.scanner?.on('disconnected', ({ reason }) => {
      telemetry()?.alarms.raise('barcode-reader-disconnected', 'warning', `barcode reader disconnected: ${reason}`);
      telemetry()?.statusChanged();
    });
    this.scanner?.on('codeRejected', ({ reason }) => {
      telemetry()?.alarms.raise('exam-selection-failed', 'warning', `barcode: line ignored as noise (${reason})`);
    });
    this.scanner?.on('codeScanned', ({ value }) => {
      const matches = this.options.profile.exam.barcode?.matches ?? [];
      manager?.select({ value, by: matches, source: 'barcode' }).catch((error: unknown) => {
        // The manager has logged and reported it already, and the message contains no patient data.
        this.log.debug({ err: { message: errorMessage(error) } }, 'barcode selection failed');
      });
    });

    this.hl7?.on('listenerChanged', ({ listening, reason }) => {
      if (listening) telemetry()?.alarms.clear('hl7-listener-down');
      else telemetry()?.alarms.raise('hl7-listener-down', 'critical', `HL7 orders cannot be received: ${reason ?? 'listener not started'}`);
    });
    this.hl7?.on('messageProcessed', ({ messageType, code, condition }) => {
      if (code === 'AA') telemetry()?.alarms.clear('hl7-message-rejected');
      else telemetry()?.alarms.raise('hl7-message-rejected', 'warning', `HL7 ${messageType} answered ${code} (condition ${condition ?? 'unknown'}); the listener log has the reason`);
    });
    // The open exam goes on when its order is cancelled, because its objects belong to the patient it was opened for. The operator decides whether to end or discontinue it.
    this.hl7?.on('ordersCancelled', ({ orders }) => {
      const open = this.store?.data.open;
      const order = open ? orders.find((candidate) => candidate.entryKey === open.entryKey) : undefined;
      if (!open || !order) return;
      this.log.warn({ examId: open.examId, orderId: order.orderId }, 'order of the open exam cancelled; the exam stays open');
      telemetry()?.alarms.raise('exam-order-cancelled', 'warning', `order ${order.orderId} of exam ${open.examId} was cancelled by the order placer; end or discontinue the exam`);
    });
    manager?.on('examEnded', () => telemetry()?.alarms.clear('exam-order-cancelled'));

    this.mppsSender?.on('mppsSent', () => telemetry()?.alarms.clear('mpps-unreachable'));
    this.mppsSender?.on('mppsUnreachable', ({ reason }) => telemetry()?.alarms.raise('mpps-unreachable', 'warning', `MPPS messages wait: ${reason}`));
    this.mppsSender?.on('mppsFailed', ({ examId, reason, setAside }) => {
      if (setAside) telemetry()?.alarms.raise('mpps-set-aside', 'warning', `MPPS of exam ${examId} set aside: ${reason}`);
    });
  }
}

/** Combines the worklist's entries and the open HL7 orders into the procedures an exam is selected from. */
function procedureLookup(worklist: WorklistService | undefined, orders: Hl7OrderService | undefined): WorklistLookup | undefined {
  if (!worklist && !orders) return undefined;
  return {
    get entries() {
      return [...(worklist?.entries ?? []), ...(orders?.entries ?? [])];
    },
    // HL7 orders arrive unrequested, so only the worklist can be queried again.
    refresh: () => worklist?.refresh() ?? Promise.resolve(),
  };
}

/** The part of the clip pipeline an exam end needs. */
export interface RecordingClips {
  readonly recording: boolean;
  toggle(pressedAt: number): void;
  on(event: 'clipCaptured' | 'clipFailed', listener: () => void): unknown;
  off(event: 'clipCaptured' | 'clipFailed', listener: () => void): unknown;
}

/** Stops a clip being recorded and waits until it is stored or has failed, so that it is captured before its exam ends. */
export async function finishRecordingClip(clips: RecordingClips | undefined, timeoutMs = 30_000): Promise<void> {
  if (!clips?.recording) return;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    finish = () => {
      clips.off('clipCaptured', finish);
      clips.off('clipFailed', finish);
      resolve();
    };
    clips.on('clipCaptured', finish);
    clips.on('clipFailed', finish);
  });
  clips.toggle(Date.now());
  const timeout = new AbortController();
  await Promise.race([done, sleep(timeoutMs, timeout.signal)]);
  timeout.abort();
  finish();
}
