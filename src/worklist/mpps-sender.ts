import { EventEmitter } from 'node:events';
import { Backoff, sleep } from '../backoff.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { CommandTag, type CommandElement } from '../pacs/dimse-command.js';
import { TransferSyntax } from '../pacs/dimse.js';
import { ScuAssociation } from '../pacs/scu-association.js';
import { MPPS_CONTEXT } from '../pacs/service-tables.js';
import { formatStatus } from '../pacs/store-status.js';
import { loadTlsSettings } from '../pacs/transport.js';
import type { MppsConfig } from '../profile/schema.js';
import { encodeDataset } from './dataset-writer.js';
import { MPPS_SOP_CLASS_UID } from './mpps-dataset.js';
import type { MppsQueue, MppsRecord } from './mpps-queue.js';

/** DIMSE command fields of N-CREATE-RQ and N-SET-RQ (PS3.7 E.1). */
const N_CREATE_RQ = 0x0140;
const N_SET_RQ = 0x0120;

type MessageKind = 'N-CREATE' | 'N-SET';

interface MppsSenderEvents {
  mppsSent: [{ examId: string; message: MessageKind; status: string }];
  mppsFailed: [{ examId: string; message: MessageKind; reason: string; setAside: boolean }];
  /** The association failed; messages wait and are retried. */
  mppsUnreachable: [{ reason: string; retryInMs: number }];
}

export interface MppsSenderStatus {
  queued: number;
  setAside: number;
  lastError?: string;
  consecutiveFailures: number;
}

/**
 * Statuses of an N-CREATE or N-SET response (PS3.7 C, PS3.4 F.7.2) that are
 * worth sending again later: processing failure, resource limitation and out
 * of resources. Other failures are permanent.
 */
function isTransientStatus(status: number): boolean {
  return status === 0x0110 || status === 0x0213 || (status & 0xff00) === 0xa700;
}

/** Success, or a warning: attribute list error (0107), value out of range (0116), or any Bxxx. */
function isAccepted(status: number): boolean {
  return status === 0x0000 || status === 0x0001 || status === 0x0107 || status === 0x0116 || (status & 0xf000) === 0xb000;
}

/**
 * Sends the queued MPPS messages to the MPPS server, oldest first: each
 * instance's N-CREATE, then its final N-SET once the exam ended. A failed
 * association is retried with backoff; a permanent failure status sets the
 * instance aside, as does a transient one after `maxAttempts`.
 */
export class MppsSender extends EventEmitter<MppsSenderEvents> {
  private readonly config: MppsConfig;
  private readonly callingAeTitle: string;
  private readonly queue: MppsQueue;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly stopping = new AbortController();
  private wakeUp: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private lastError: string | undefined;

  constructor(options: { config: MppsConfig; callingAeTitle: string; queue: MppsQueue; log: Logger }) {
    super();
    this.config = options.config;
    this.callingAeTitle = options.callingAeTitle;
    this.queue = options.queue;
    this.log = options.log.child({ component: 'mpps' });
    this.backoff = new Backoff(options.config.retry);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops after the message in flight, bounded by the association timeouts. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.wakeUp?.();
    await this.loop;
  }

  /** Makes the sender look at the queue now. */
  wake(): void {
    this.wakeUp?.();
  }

  status(): MppsSenderStatus {
    const records = this.queue.list();
    const status: MppsSenderStatus = {
      queued: records.filter((record) => record.setAside === undefined).length,
      setAside: records.filter((record) => record.setAside !== undefined).length,
      consecutiveFailures: this.backoff.failures,
    };
    if (this.lastError !== undefined) status.lastError = this.lastError;
    return status;
  }

  private async run(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      if (this.queue.pending().length === 0) {
        await new Promise<void>((resolve) => {
          this.wakeUp = resolve;
        });
        this.wakeUp = undefined;
        continue;
      }
      let delayMs: number;
      try {
        const rejected = await this.sendPending();
        if (rejected === 0) {
          this.backoff.reset();
          this.lastError = undefined;
          continue;
        }
        // A message the server failed transiently waits before it is sent again.
        delayMs = this.backoff.next();
      } catch (error) {
        if (this.stopping.signal.aborted) break;
        this.lastError = errorMessage(error);
        delayMs = this.backoff.next();
        this.log.warn({ err: { message: this.lastError }, retryInMs: delayMs }, 'MPPS server unreachable, retrying');
        this.emit('mppsUnreachable', { reason: this.lastError, retryInMs: delayMs });
      }
      await Promise.race([sleep(delayMs, this.stopping.signal), new Promise<void>((resolve) => (this.wakeUp = resolve))]);
      this.wakeUp = undefined;
    }
  }

  /** Sends every pending message on one association and returns how many the server failed. Throws when the association fails. */
  private async sendPending(): Promise<number> {
    const { config } = this;
    const association = await ScuAssociation.open({
      host: config.host,
      port: config.port,
      callingAeTitle: this.callingAeTitle,
      calledAeTitle: config.calledAeTitle,
      connectTimeoutMs: config.connectTimeoutMs,
      associationTimeoutMs: config.associationTimeoutMs,
      contexts: [MPPS_CONTEXT],
      log: this.log,
      tls: await loadTlsSettings(config.tls),
      signal: this.stopping.signal,
    });
    try {
      const context = association.acceptedContexts()[0];
      if (!context) throw new EndocapError(ErrorCodes.PACS_NO_PRESENTATION_CONTEXT, `${config.host}:${config.port} did not accept MPPS`, { retryable: true });
      const explicitVr = context.transferSyntaxUid === TransferSyntax.ExplicitVRLittleEndian;
      let rejected = 0;
      for (const record of this.queue.pending()) {
        if (this.stopping.signal.aborted) break;
        if (!record.create.sent && !(await this.send(association, record, 'N-CREATE', explicitVr))) {
          rejected += 1;
          continue;
        }
        const current = this.queue.get(record.sopInstanceUid);
        if (current?.final && !current.final.sent && !(await this.send(association, current, 'N-SET', explicitVr))) rejected += 1;
      }
      return rejected;
    } finally {
      await association.release(config.associationTimeoutMs);
    }
  }

  /** Sends one message and records the outcome; returns true when the server accepted it. Throws when the association fails. */
  private async send(association: ScuAssociation, record: MppsRecord, kind: MessageKind, explicitVr: boolean): Promise<boolean> {
    const message = kind === 'N-CREATE' ? record.create : record.final;
    if (!message) return false;
    const command: CommandElement[] =
      kind === 'N-CREATE'
        ? [
            { tag: CommandTag.AffectedSopClassUid, vr: 'UI', value: MPPS_SOP_CLASS_UID },
            { tag: CommandTag.CommandField, vr: 'US', value: N_CREATE_RQ },
            { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0x0000 },
            { tag: CommandTag.AffectedSopInstanceUid, vr: 'UI', value: record.sopInstanceUid },
          ]
        : [
            { tag: CommandTag.RequestedSopClassUid, vr: 'UI', value: MPPS_SOP_CLASS_UID },
            { tag: CommandTag.CommandField, vr: 'US', value: N_SET_RQ },
            { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0x0000 },
            { tag: CommandTag.RequestedSopInstanceUid, vr: 'UI', value: record.sopInstanceUid },
          ];
    const response = await association.send(
      { abstractSyntaxUid: MPPS_SOP_CLASS_UID, command, dataset: encodeDataset(message.attributes, { explicitVr }) },
      { timeoutMs: this.config.requestTimeoutMs, label: `${kind} of MPPS for exam ${record.examId}` },
    );
    const status = response.status;
    // 0111 to an N-CREATE: the instance exists, because an earlier attempt got through and its response was lost.
    if (isAccepted(status) || (kind === 'N-CREATE' && status === 0x0111)) {
      if (kind === 'N-CREATE') await this.queue.markCreateSent(record.sopInstanceUid);
      else await this.queue.markFinalSent(record.sopInstanceUid);
      this.log.info({ examId: record.examId, message: kind, status: formatStatus(status), finalStatus: kind === 'N-SET' ? record.final?.status : 'IN PROGRESS' }, 'MPPS message accepted');
      this.emit('mppsSent', { examId: record.examId, message: kind, status: formatStatus(status) });
      return true;
    }

    const reason = `${kind} of MPPS for exam ${record.examId} failed with status ${formatStatus(status)}`;
    const setAside = !isTransientStatus(status) || record.attempts + 1 >= this.config.maxAttempts;
    if (setAside) await this.queue.markSetAside(record.sopInstanceUid, reason);
    else await this.queue.markFailed(record.sopInstanceUid, reason);
    this.log.error({ examId: record.examId, message: kind, status: formatStatus(status), attempts: record.attempts + 1, setAside }, 'MPPS message rejected');
    this.emit('mppsFailed', { examId: record.examId, message: kind, reason, setAside });
    return false;
  }
}
