import { EventEmitter } from 'node:events';
import { Backoff, sleep } from '../backoff.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { storageCommitmentSchema, type DestinationConfig, type StorageCommitmentConfig } from '../profile/schema.js';
import type { CommitmentQueue, SpoolEntry } from '../spool/types.js';
import { requestCommitment } from './commitment-scu.js';
import type { CommitmentTracker } from './commitment-tracker.js';

export interface CommitmentRequestedEvent {
  destination: string;
  transactionUid: string;
  /** Objects named in the request. */
  objects: number;
}

export interface CommitmentSupportChangedEvent {
  destination: string;
  /** False when the PACS rejected Storage Commitment; its objects then stay stored and are never committed. */
  supported: boolean;
  reason?: string;
}

export interface CommitmentRequesterEvents {
  /** A transaction was recorded and its N-ACTION request is about to be sent. */
  commitmentRequested: [CommitmentRequestedEvent];
  /** Emitted when the PACS first rejects Storage Commitment, and when it accepts it again afterwards. */
  commitmentSupportChanged: [CommitmentSupportChangedEvent];
}

export interface CommitmentRequesterOptions {
  /** A destination whose `storageCommitment` is set. */
  destination: DestinationConfig;
  callingAeTitle: string;
  queue: CommitmentQueue;
  tracker: CommitmentTracker;
  /** Generator of Transaction UIDs under the station's UID root. */
  newUid: () => string;
  log: Logger;
  /** How long stop() lets a request in progress finish before aborting it, in milliseconds. */
  stopGraceMs?: number;
  /** Maximum wait between two scans of the queue when nothing is due, in milliseconds. */
  rescanMs?: number;
}

const defaultStopGraceMs = 2_000;
const defaultRescanMs = 60_000;

/** Objects that become due within this time of the first due one are requested in the same transaction, in milliseconds. */
const groupingMs = 1_000;

/** Maximum wait between two requests to a PACS that rejected Storage Commitment, in milliseconds. */
const maxUnsupportedRetryMs = 24 * 60 * 60 * 1_000;

interface Plan {
  batch: SpoolEntry[];
  /** Time at which more objects become due, when none is due now. */
  nextDueAt: number;
}

/**
 * Asks one destination for Storage Commitment of the objects it stored. An
 * object becomes due `requestDelayMs` after it was stored, and is asked again
 * in a new transaction when no result arrived within `resultTimeoutMs`. Each
 * transaction is recorded by the tracker before its request is sent. Failures
 * worth retrying back off as the sender does. A PACS that rejects Storage
 * Commitment is reported once and asked again only after `unsupportedRetryMs`,
 * doubling up to a day; its objects stay stored.
 */
export class CommitmentRequester extends EventEmitter<CommitmentRequesterEvents> {
  private readonly destination: DestinationConfig;
  private readonly config: StorageCommitmentConfig;
  private readonly callingAeTitle: string;
  private readonly queue: CommitmentQueue;
  private readonly tracker: CommitmentTracker;
  private readonly newUid: () => string;
  private readonly log: Logger;
  private readonly stopGraceMs: number;
  private readonly rescanMs: number;
  private readonly backoff: Backoff;
  private readonly unsupportedBackoff: Backoff;
  /** Transactions already reported as timed out, so that each is logged once. */
  private readonly timedOut = new Set<string>();

  private loop: Promise<void> | undefined;
  private stopping = false;
  private abortController = new AbortController();
  private interruptWait: (() => void) | undefined;
  private waitingIdle = false;
  private woken = false;
  private nextAttemptAt: number | undefined;
  private supported: boolean | undefined;

  constructor(options: CommitmentRequesterOptions) {
    super();
    this.destination = options.destination;
    this.config = options.destination.storageCommitment ?? storageCommitmentSchema.parse({ enabled: true });
    this.callingAeTitle = options.callingAeTitle;
    this.queue = options.queue;
    this.tracker = options.tracker;
    this.newUid = options.newUid;
    this.log = options.log.child({ component: 'commitment-requester', destination: options.destination.name });
    this.stopGraceMs = options.stopGraceMs ?? defaultStopGraceMs;
    this.rescanMs = options.rescanMs ?? defaultRescanMs;
    const { initialMs, maxMs, multiplier } = options.destination.retry;
    this.backoff = new Backoff({ initialMs, maxMs, multiplier });
    this.unsupportedBackoff = new Backoff({ initialMs: this.config.unsupportedRetryMs, maxMs: Math.max(maxUnsupportedRetryMs, this.config.unsupportedRetryMs) });
  }

  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.abortController = new AbortController();
    const { batchSize, requestDelayMs, resultTimeoutMs } = this.config;
    this.log.info({ batchSize, requestDelayMs, resultTimeoutMs }, 'commitment requester started');
    this.loop = this.run().catch((error: unknown) => {
      this.log.error({ err: { message: errorMessage(error) } }, 'commitment requester loop ended unexpectedly');
    });
  }

  /** Stops the loop. A request in progress may finish within the grace period, after which it is aborted. */
  async stop(): Promise<void> {
    const loop = this.loop;
    if (!loop) return;
    this.stopping = true;
    this.interruptWait?.();
    const finished = await Promise.race([loop.then(() => true), sleep(this.stopGraceMs).then(() => false)]);
    if (!finished) {
      this.abortController.abort();
      await loop;
    }
    this.loop = undefined;
    this.log.info('commitment requester stopped');
  }

  /** Tells the requester that an object was stored. During a backoff it waits for the backoff to end. */
  wake(): void {
    this.woken = true;
    if (this.waitingIdle) this.interruptWait?.();
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const now = Date.now();
      if (this.nextAttemptAt !== undefined && this.nextAttemptAt > now) {
        await this.wait(this.nextAttemptAt - now, false);
        continue;
      }
      this.nextAttemptAt = undefined;
      this.woken = false;

      let plan: Plan;
      try {
        await this.tracker.prune();
        plan = this.plan(now);
      } catch (error) {
        this.log.error({ err: { message: errorMessage(error) } }, 'reading the commitment queue failed');
        this.scheduleRetry();
        continue;
      }
      if (plan.batch.length > 0) {
        await this.requestBatch(plan.batch);
        continue;
      }
      if (!this.woken) await this.wait(Math.max(0, Math.min(plan.nextDueAt - now, this.rescanMs)), true);
    }
  }

  /** Picks the objects due now: stored at least `requestDelayMs` ago and not named by a transaction still within its time limit. */
  private plan(now: number): Plan {
    const name = this.destination.name;
    const { batchSize, requestDelayMs, resultTimeoutMs } = this.config;
    let nextDueAt = Number.POSITIVE_INFINITY;

    const inFlight = new Set<string>();
    const pending = this.tracker.pending(name);
    const pendingUids = new Set(pending.map((transaction) => transaction.transactionUid));
    for (const uid of this.timedOut) if (!pendingUids.has(uid)) this.timedOut.delete(uid);
    for (const transaction of pending) {
      const expiresAt = Date.parse(transaction.requestedAt) + resultTimeoutMs;
      if (expiresAt > now) {
        for (const object of transaction.objects) inFlight.add(object.id);
        nextDueAt = Math.min(nextDueAt, expiresAt);
      } else if (!this.timedOut.has(transaction.transactionUid)) {
        this.timedOut.add(transaction.transactionUid);
        this.log.info({ transactionUid: transaction.transactionUid, objects: transaction.objects.length, resultTimeoutMs }, 'commitment result timed out, asking again');
      }
    }

    const due: SpoolEntry[] = [];
    const soon: SpoolEntry[] = [];
    for (const entry of this.queue.awaitingCommitment(name)) {
      if (inFlight.has(entry.id)) continue;
      const storedAt = Date.parse(entry.deliveries[name]?.updatedAt ?? entry.queuedAt);
      const dueAt = storedAt + requestDelayMs;
      if (dueAt <= now) due.push(entry);
      else if (dueAt <= now + groupingMs) soon.push(entry);
      else nextDueAt = Math.min(nextDueAt, dueAt);
    }
    if (due.length === 0) {
      for (const entry of soon) nextDueAt = Math.min(nextDueAt, Date.parse(entry.deliveries[name]?.updatedAt ?? entry.queuedAt) + requestDelayMs);
      return { batch: [], nextDueAt };
    }
    return { batch: [...due, ...soon].slice(0, batchSize), nextDueAt };
  }

  private async requestBatch(batch: SpoolEntry[]): Promise<void> {
    const destination = this.destination.name;
    const transactionUid = this.newUid();
    try {
      await this.tracker.begin(destination, batch, transactionUid);
    } catch (error) {
      this.log.error({ transactionUid, err: { message: errorMessage(error) } }, 'recording a commitment transaction failed');
      this.scheduleRetry();
      return;
    }
    this.emitSafely(() => this.emit('commitmentRequested', { destination, transactionUid, objects: batch.length }));

    const outcome = await requestCommitment({
      destination: this.destination,
      callingAeTitle: this.callingAeTitle,
      transactionUid,
      objects: batch.map((entry) => ({ sopClassUid: entry.sopClassUid, sopInstanceUid: entry.sopInstanceUid })),
      reportWaitMs: this.config.reportWaitMs,
      sink: this.tracker,
      log: this.log,
      signal: this.abortController.signal,
    });

    switch (outcome.kind) {
      case 'requested':
        this.backoff.reset();
        this.unsupportedBackoff.reset();
        this.log.info({ transactionUid, objects: batch.length, status: outcome.status, reportedHere: outcome.reportedHere }, 'commitment requested');
        this.setSupported(true);
        return;
      case 'unsupported': {
        await this.discard(transactionUid);
        const delayMs = this.unsupportedBackoff.next();
        this.nextAttemptAt = Date.now() + delayMs;
        this.setSupported(false, outcome.reason, delayMs);
        return;
      }
      case 'failed':
        // A request that may have arrived keeps its transaction: its result is still accepted.
        if (!outcome.sent) await this.discard(transactionUid);
        this.log.warn({ transactionUid, reason: outcome.reason, sent: outcome.sent }, 'commitment request failed, will retry');
        this.scheduleRetry();
        return;
    }
  }

  private async discard(transactionUid: string): Promise<void> {
    try {
      await this.tracker.discard(transactionUid);
    } catch (error) {
      // The transaction then waits for its time limit, after which its objects are asked again.
      this.log.error({ transactionUid, err: { message: errorMessage(error) } }, 'removing a commitment transaction failed');
    }
  }

  /** Logs and emits a change of support once; later rejections are logged at debug level only. */
  private setSupported(supported: boolean, reason?: string, retryInMs?: number): void {
    const destination = this.destination.name;
    if (this.supported === supported || (supported && this.supported === undefined)) {
      this.supported = supported;
      if (!supported) this.log.debug({ reason, retryInMs }, 'storage commitment still rejected');
      return;
    }
    this.supported = supported;
    if (supported) {
      this.log.info('destination accepts storage commitment again');
      this.emitSafely(() => this.emit('commitmentSupportChanged', { destination, supported }));
      return;
    }
    this.log.warn({ reason, retryInMs }, 'destination rejected storage commitment, objects stay stored');
    this.emitSafely(() => this.emit('commitmentSupportChanged', { destination, supported, reason: reason ?? '' }));
  }

  /** Waits `ms`, or until wake() when idle. stop() always ends the wait. */
  private async wait(ms: number, idle: boolean): Promise<void> {
    const interrupt = new AbortController();
    this.interruptWait = () => interrupt.abort();
    this.waitingIdle = idle;
    try {
      if (!this.stopping) await sleep(ms, interrupt.signal);
    } finally {
      this.interruptWait = undefined;
      this.waitingIdle = false;
    }
  }

  private scheduleRetry(): void {
    if (this.nextAttemptAt !== undefined && this.nextAttemptAt > Date.now()) return;
    const delayMs = this.backoff.next();
    this.nextAttemptAt = Date.now() + delayMs;
    this.log.info({ delayMs, consecutiveFailures: this.backoff.failures }, 'commitment retry scheduled');
  }

  /** Runs `emit`, logging a listener that throws, so that a listener cannot end the loop. */
  private emitSafely(emit: () => void): void {
    try {
      emit();
    } catch (error) {
      this.log.error({ err: { message: errorMessage(error) } }, 'commitment requester event listener failed');
    }
  }
}
