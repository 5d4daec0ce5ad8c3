import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ExamManager, type WorklistLookup } from '../../src/daemon/exam-manager.js';
import { unidentifiedCaptureContext } from '../../src/daemon/exam-capture.js';
import { ExamStore } from '../../src/daemon/exam-store.js';
import { createUidGenerator } from '../../src/dicom/uid.js';
import type { Logger } from '../../src/log.js';
import { examSchema, mppsSchema, stationSchema, type ExamConfig, type MppsConfig, type StationConfig } from '../../src/profile/schema.js';
import { AppState } from '../../src/state/app-state.js';
import { MppsQueue } from '../../src/worklist/mpps-queue.js';
import { MppsSender } from '../../src/worklist/mpps-sender.js';
import type { WorklistEntry } from '../../src/worklist/worklist-entry.js';
import { localDate } from '../../src/worklist/worklist-query.js';

export const station: StationConfig = stationSchema.parse({ aeTitle: 'ENDOCAP_TEST', stationName: 'TEST-TOWER', uidRoot: '1.2.826.0.1.3680043.10.1437', boxId: 'test-box' });

/** Returns a worklist entry scheduled now for ENDOCAP_TEST, with the given accession number and patient. */
export function entry(accessionNumber: string, overrides: Partial<WorklistEntry> = {}): WorklistEntry {
  const now = new Date();
  return {
    patientName: `Test^Patient${accessionNumber}`,
    patientId: `PID-${accessionNumber}`,
    issuerOfPatientId: '',
    patientBirthDate: '19700101',
    patientSex: 'F',
    accessionNumber,
    studyInstanceUid: `1.2.826.0.1.3680043.10.1437.66.${accessionNumber.replace(/\D/g, '') || '9'}`,
    referringPhysicianName: '',
    requestingPhysician: '',
    admissionId: '',
    requestedProcedureId: `RP${accessionNumber}`.slice(0, 16),
    requestedProcedureDescription: 'Colonoscopy',
    requestedProcedureCodes: [{ codeValue: '45378-5', codingSchemeDesignator: 'LN', codingSchemeVersion: '', codeMeaning: 'Colonoscopy' }],
    referencedStudies: [],
    step: {
      id: `SPS${accessionNumber}`.slice(0, 16),
      description: 'Colonoscopy step',
      modality: 'ES',
      stationAeTitle: 'ENDOCAP_TEST',
      stationName: '',
      location: '',
      startDate: localDate(now),
      startTime: `${String(now.getHours()).padStart(2, '0')}${String(now.getMinutes()).padStart(2, '0')}`,
      performingPhysicianName: '',
      protocolCodes: [],
    },
    ...overrides,
  };
}

/** A worklist of fixed entries; `refreshes` counts the queries asked for. */
export class FixedWorklist implements WorklistLookup {
  entries: WorklistEntry[];
  refreshes = 0;

  constructor(entries: WorklistEntry[]) {
    this.entries = entries;
  }

  refresh(): Promise<void> {
    this.refreshes += 1;
    return Promise.resolve();
  }
}

export interface ExamHarness {
  directory: string;
  manager: ExamManager;
  store: ExamStore;
  queue: MppsQueue | undefined;
  sender: MppsSender | undefined;
  /** SOP Instance UIDs the fake spool holds. */
  spool: Set<string>;
  /** Stops the manager and the sender, leaving the state on disk. */
  close(): Promise<void>;
}

export interface HarnessOptions {
  directory?: string;
  worklist?: WorklistLookup;
  mppsPort?: number;
  exam?: Partial<ExamConfig>;
  mpps?: Partial<MppsConfig>;
  clock?: () => number;
  beforeEnd?: () => Promise<void>;
  spool?: Set<string>;
  log: Logger;
}

/** Starts an exam manager on a real store, MPPS queue and sender in a temp folder. */
export async function startExamHarness(options: HarnessOptions): Promise<ExamHarness> {
  const directory = options.directory ?? (await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-')));
  const store = await ExamStore.open(directory, options.log);
  const state = await AppState.open(directory);
  const newUid = createUidGenerator(station.uidRoot);

  let queue: MppsQueue | undefined;
  let sender: MppsSender | undefined;
  if (options.mppsPort !== undefined) {
    const config = mppsSchema.parse({
      host: '127.0.0.1',
      port: options.mppsPort,
      calledAeTitle: 'MPPS',
      connectTimeoutMs: 1_000,
      associationTimeoutMs: 2_000,
      requestTimeoutMs: 3_000,
      retry: { initialMs: 100, maxMs: 400 },
      ...options.mpps,
    });
    queue = new MppsQueue({ directory: path.join(directory, 'mpps'), log: options.log });
    await queue.open();
    sender = new MppsSender({ config, callingAeTitle: station.aeTitle, queue, log: options.log });
    sender.start();
  }

  const spool = options.spool ?? new Set<string>();
  const mppsSender = sender;
  const manager = new ExamManager({
    config: examSchema.parse({ ...options.exam }),
    station,
    store,
    worklist: options.worklist,
    stationAeTitle: station.aeTitle,
    mpps: queue && mppsSender ? { queue, wake: () => mppsSender.wake() } : undefined,
    unidentified: unidentifiedCaptureContext({ state, boxId: 'test-box', stationName: station.stationName, newUid, newStudyAfterIdleMs: 30 * 60_000 }),
    newUid,
    inSpool: (uid) => spool.has(uid),
    ...(options.beforeEnd ? { beforeEnd: options.beforeEnd } : {}),
    log: options.log,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  await manager.start();
  return {
    directory,
    manager,
    store,
    queue,
    sender,
    spool,
    async close() {
      await manager.stop();
      await sender?.stop();
    },
  };
}

/** Allocates a capture and records it as stored, as the still capture does. */
export async function capture(harness: ExamHarness, kind: 'still' | 'clip', at = new Date()): Promise<{ sopInstanceUid: string; examId: string | undefined; studyInstanceUid: string; seriesInstanceUid: string; instanceNumber: number }> {
  const slot = await harness.manager.allocate(kind, at);
  harness.spool.add(slot.sopInstanceUid);
  await slot.stored();
  slot.settle();
  return { sopInstanceUid: slot.sopInstanceUid, examId: slot.examId, studyInstanceUid: slot.study.studyInstanceUid, seriesInstanceUid: slot.series.seriesInstanceUid, instanceNumber: slot.instanceNumber };
}

export async function removeDirectory(directory: string): Promise<void> {
  await rm(directory, { recursive: true, force: true });
}
