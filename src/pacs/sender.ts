import { EventEmitter } from 'node:events';
import { Backoff, sleep } from '../backoff.js';
import type { Logger } from '../log.js';
import type { DestinationConfig, RetryConfig } from '../profile/schema.js';
import type { SenderQueue, SpoolEntry } from '../spool/types.js';
import { storeObjects, type LazyStoreObject, type StoreObjectMetadata, type StoreOutcome, type StoreResult } from './store-scu.js';

export interface ObjectStoredEvent {
  id: string;
  destination: string;
  status: number;
  /** True when the peer responded with a warning status. The object still counts as stored. */
  warning: boolean;
}

export interface StoreFailedEvent {
  id: string;
  destination: string;
  reason: string;
  status?: number;
  /** False when the failure is permanent and the object is set aside. */
  willRetry: boolean;
}

export interface ObjectSetAsideEvent {
  id: string;
  destination: string;
  reason: string;
  status?: number;
}

export interface LinkChangedEvent {
  destination: string;
  up: boolean;
  reason?: string;
}

export interface SenderEvents {
  objectStored: [ObjectStoredEvent];
  storeFailed: [StoreFailedEvent];
  objectSetAside: [ObjectSetAsideEvent];
  linkChanged: [LinkChangedEvent];
}

export interface SenderStatus {
  destination: string;
  /** Outcome of the last object tried, or `none` before the first. */
  lastResult: StoreOutcome | 'none';
  lastError?: string;
  /** Batches in a row that ended with a transient failure, reset to 0 when an object is stored. */
  consecutiveFailures: number;
  /** ISO time of the next attempt while backing off. */
  nextAttemptAt?: string;
}

/** Settings of a destination that every sender uses, whatever its protocol. */
export interface SenderTarget {
  name: string;
  retry: RetryConfig;
}

/** Controls of one transfer: `signal` aborts it, and `onResult` is called once per object, as in storeObjects. */
export interface TransferControl {
  signal: AbortSignal;
  onResult: (result: StoreResult) => void | Promise<void>;
  /**
   * Takes more queued objects for the transfer in progress, oldest first and
   * only while `canSend` accepts them, as storeObjects' `more`. A transfer
   * that cannot carry more objects does not call it.
   */
  more?: (canSend: (object: StoreObjectMetadata) => boolean) => Promise<LazyStoreObject[]>;
}

/**
 * Sends one batch of queued objects to a destination and resolves with one
 * result per object. It never rejects: a failure becomes a transient or
 * permanent result, with `associated: false` when the peer could not be reached.
 */
export type Transfer = (objects: LazyStoreObject[], control: TransferControl) => Promise<StoreResult[]>;

interface CommonSenderOptions {
  queue: SenderQueue;
  log: Logger;
  /**
   * Objects taken from the queue at a time. An association carries one batch,
   * then takes the next while the queue has objects it can carry.
   */
  batchSize?: number;
  /** Maximum number of objects sent over one association. Default 1000. */
  objectsPerAssociation?: number;
  /** How long stop() lets an association in progress finish before aborting it, in milliseconds. */
  stopGraceMs?: number;
}

/** A DICOM destination: objects go by C-STORE on our own association code. */
export interface DimseSenderOptions extends CommonSenderOptions {
  destination: DestinationConfig;
  callingAeTitle: string;
}

/** Any other protocol: the caller gives the transfer and what to log about the peer. */
export interface TransferSenderOptions extends CommonSenderOptions {
  destination: SenderTarget;
  transfer: Transfer;
  /** Safe-to-log description of the peer (host, port, URL without credentials). */
  endpoint: Record<string, unknown>;
}

export type SenderOptions = DimseSenderOptions | TransferSenderOptions;

const defaultBatchSize = 20;
/**
 * Default maximum of objects sent over one association. While the queue has
 * work, an association goes on taking batches. Ending it now and then gives a
 * batch log line and stays clear of peers that limit an association's length.
 */
const defaultObjectsPerAssociation = 1_000;

/**
 * Results that may wait to be recorded while sending goes on. Twice the
 * journal's fdatasync group, so that sending goes on while a group is synced.
 * A crash re-sends up to this many objects plus two: the result not yet
 * passed on and the object in flight (docs/crash-soak.md).
 */
export const unrecordedLimit = 64;
const defaultStopGraceMs = 2_000;

/**
 * Forwards queued objects to one destination, oldest first, one association
 * per batch. Transient failures keep objects queued and back off with
 * exponential delays, jitter and a cap, reset after a success. Permanent
 * failures set the object aside.
 */
export class Sender extends EventEmitter<SenderEvents> {
  private readonly destination: SenderTarget;
  private readonly transfer: Transfer;
  private readonly endpoint: Record<string, unknown>;
  private readonly queue: SenderQueue;
  private readonly log: Logger;
  private readonly batchSize: number;
  private readonly objectsPerAssociation: number;
  private readonly stopGraceMs: number;
  private readonly backoff: Backoff;

  private loop: Promise<void> | undefined;
  private stopping = false;
  /** Aborts the association in progress when stop() runs out of grace. */
  private abortController = new AbortController();
  /** Ends the current wait: on stop() always, on wake() only when idle. */
  private interruptWait: (() => void) | undefined;
  private waitingIdle = false;
  private woken = false;

  private linkUp: boolean | undefined;
  /** SOP class and transfer syntax pairs the peer accepted no context for, and until when batches leave them out. */
  private readonly unacceptedUntil = new Map<string, number>();
  private lastResult: StoreOutcome | 'none' = 'none';
  private lastError: string | undefined;
  private nextAttemptAt: number | undefined;

  constructor(options: SenderOptions) {
    super();
    this.destination = options.destination;
    if ('transfer' in options) {
      this.transfer = options.transfer;
      this.endpoint = options.endpoint;
    } else {
      this.transfer = dimseTransfer(options.destination, options.callingAeTitle, options.log);
      const { host, port, calledAeTitle } = options.destination;
      this.endpoint = { host, port, calledAeTitle };
    }
    this.queue = options.queue;
    this.log = options.log.child({ component: 'sender', destination: options.destination.name });
    this.batchSize = Math.max(1, options.batchSize ?? defaultBatchSize);
    this.objectsPerAssociation = Math.max(this.batchSize, options.objectsPerAssociation ?? defaultObjectsPerAssociation);
    this.stopGraceMs = options.stopGraceMs ?? defaultStopGraceMs;
    const { initialMs, maxMs, multiplier } = options.destination.retry;
    this.backoff = new Backoff({ initialMs, maxMs, multiplier });
  }

  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.abortController = new AbortController();
    this.log.info(this.endpoint, 'sender started');
    this.loop = this.run().catch((error: unknown) => {
      this.log.error({ err: error }, 'sender loop ended unexpectedly');
    });
  }

  /**
   * Stops the loop. An association in progress may finish within the grace
   * period. After that it is aborted, and its objects without a response stay queued.
   */
  async stop(): Promise<void> {
    const loop = this.loop;
    if (!loop) return;
    this.stopping = true;
    this.interruptWait?.();
    const finished = await Promise.race([loop.then(() => true), sleep(this.stopGraceMs).then(() => false)]);
    if (!finished) {
      this.log.info({ graceMs: this.stopGraceMs }, 'aborting association to stop the sender');
      this.abortController.abort();
      await loop;
    }
    this.loop = undefined;
    this.log.info('sender stopped');
  }

  /** Tells the sender that an object was queued. During a backoff it waits for the backoff to end. */
  wake(): void {
    this.woken = true;
    if (this.waitingIdle) this.interruptWait?.();
  }

  status(): SenderStatus {
    const status: SenderStatus = {
      destination: this.destination.name,
      lastResult: this.lastResult,
      consecutiveFailures: this.backoff.failures,
    };
    if (this.lastError !== undefined) status.lastError = this.lastError;
    if (this.nextAttemptAt !== undefined) status.nextAttemptAt = new Date(this.nextAttemptAt).toISOString();
    return status;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const delay = this.nextAttemptAt === undefined ? 0 : this.nextAttemptAt - Date.now();
      if (delay > 0) {
        await this.wait(delay, false);
        continue;
      }
      this.nextAttemptAt = undefined;
      this.woken = false;

      let batch: SpoolEntry[];
      try {
        batch = this.nextBatch();
      } catch (error) {
        this.log.error({ err: error }, 'reading the queue failed');
        this.scheduleRetry();
        continue;
      }
      if (batch.length === 0) {
        if (!this.woken) await this.wait(undefined, true);
        continue;
      }
      await this.sendBatch(batch);
    }
  }

  /**
   * Returns the oldest queued objects, leaving out those of a SOP class and
   * transfer syntax the peer lately accepted no context for, unless nothing
   * else waits. So clips for a PACS without video wait for their retry without
   * holding back the stills queued after them.
   */
  private nextBatch(): SpoolEntry[] {
    const now = Date.now();
    for (const [key, until] of this.unacceptedUntil) {
      if (until <= now) this.unacceptedUntil.delete(key);
    }
    const destination = this.destination.name;
    const limit = this.batchSize;
    const unaccepted = (entry: Readonly<SpoolEntry>): boolean => this.unacceptedUntil.has(contextKey(entry));
    const ready = this.unacceptedUntil.size === 0 ? [] : this.queue.pending(destination, { limit, skip: unaccepted }).filter((entry) => !unaccepted(entry));
    return (ready.length > 0 ? ready : this.queue.pending(destination, { limit })).slice(0, limit);
  }

  /** Waits `ms`, or until wake() when idle. stop() always ends the wait. */
  private async wait(ms: number | undefined, idle: boolean): Promise<void> {
    const interrupt = new AbortController();
    this.interruptWait = () => interrupt.abort();
    this.waitingIdle = idle;
    try {
      if (this.stopping) return;
      if (ms === undefined) await new Promise<void>((resolve) => interrupt.signal.addEventListener('abort', () => resolve(), { once: true }));
      else await sleep(ms, interrupt.signal);
    } finally {
      this.interruptWait = undefined;
      this.waitingIdle = false;
    }
  }

  private async sendBatch(batch: SpoolEntry[]): Promise<void> {
    // storeObjects reads each file while the one before it is sent, and reads
    // nothing when the association cannot be opened.
    const objects = batch.map((entry) => this.toStoreObject(entry));
    if (objects.length === 0) return;
    const byId = new Map<string, StoreObjectMetadata>(objects.map((object) => [object.id, object]));

    try {
      await this.queue.markSending(objects.map((object) => object.id), this.destination.name);
    } catch (error) {
      this.log.error({ err: error }, 'recording the batch as sending failed');
      this.scheduleRetry();
      return;
    }

    // Each result is written to the queue as soon as it arrives, while the next
    // objects are sent. The writes of several results overlap on the thread
    // pool, and their events follow in batch order. Sending waits while more
    // than `unrecordedLimit` results are not yet recorded. The next run sends
    // again an object that the PACS stored but the spool had not recorded at a
    // crash, so the limit bounds those duplicates.
    const records: Array<Promise<void>> = [];
    let objectsTaken = objects.length;
    // After a transient failure the association takes no more objects: the
    // failed one would be the oldest queued again, and is retried after the backoff.
    let failedTransiently = false;
    const results = await this.transfer(objects, {
      signal: this.abortController.signal,
      onResult: (result) => {
        if (result.associated === true) this.updateLink(true);
        if (result.outcome === 'transient') failedTransiently = true;
        const unaccepted = result.noContext === true ? byId.get(result.id) : undefined;
        if (unaccepted !== undefined) this.unacceptedUntil.set(contextKey(unaccepted), Date.now() + this.destination.retry.maxMs);
        const persisted = this.persist(result);
        const previous = records.at(-1) ?? Promise.resolve();
        records.push(
          previous.then(async () => {
            if (await persisted) this.announce(result);
          }),
        );
        return records.at(-1 - unrecordedLimit);
      },
      more: async (canSend) => {
        if (failedTransiently) return [];
        const more = await this.takeMore(canSend, this.objectsPerAssociation - objectsTaken);
        objectsTaken += more.length;
        for (const object of more) byId.set(object.id, object);
        return more;
      },
    });
    // No more results come from this association, so the ones being recorded
    // need not wait for others to share their flush.
    this.queue.flushResults?.();
    await records.at(-1);
    const attempted = results.filter((result) => result.associated !== undefined);
    if (attempted.length > 0) this.updateLink(attempted.some((result) => result.associated === true), attempted[0]?.reason);

    if (results.some((result) => result.outcome === 'stored' || result.outcome === 'warning')) this.backoff.reset();
    // Objects left unsent behind a failure wait for that failure's backoff. A
    // batch that sent nothing at all (a peer that ends each association at once) backs off too.
    const failed = results.some((result) => result.outcome === 'transient' && result.unsent !== true);
    const noneSent = !this.stopping && results.length > 0 && results.every((result) => result.unsent === true);
    if (failed || noneSent) this.scheduleRetry();
  }

  /**
   * Takes up to a batch of the oldest queued objects for the association in
   * progress and records them as sending. It stops at the first object the
   * association cannot carry, so that objects still go oldest first, and takes
   * nothing while stopping or after a failure.
   */
  private async takeMore(canSend: (object: StoreObjectMetadata) => boolean, room: number): Promise<LazyStoreObject[]> {
    if (this.stopping || room <= 0 || this.nextAttemptAt !== undefined) return [];
    const taken: SpoolEntry[] = [];
    try {
      const limit = Math.min(room, this.batchSize);
      for (const entry of this.queue.pending(this.destination.name, { limit })) {
        if (taken.length >= limit || !canSend(entry)) break;
        taken.push(entry);
      }
      if (taken.length > 0) await this.queue.markSending(taken.map((entry) => entry.id), this.destination.name);
    } catch (error) {
      this.log.error({ err: error }, 'taking more objects for the association failed');
      return [];
    }
    return taken.map((entry) => this.toStoreObject(entry));
  }

  private toStoreObject(entry: SpoolEntry): LazyStoreObject {
    const object: LazyStoreObject = {
      id: entry.id,
      sopClassUid: entry.sopClassUid,
      sopInstanceUid: entry.sopInstanceUid,
      transferSyntaxUid: entry.transferSyntaxUid,
      bytes: entry.bytes,
      read: (into) => this.queue.read(entry.id, into),
    };
    const openStream = this.queue.openStream?.bind(this.queue);
    if (openStream) object.open = () => openStream(entry.id);
    return object;
  }

  /**
   * Writes one result to the queue. A queue error is logged and leaves the
   * object queued; it resolves false then, and no event may be emitted for it.
   * An object that was not sent goes back to the queue without an event.
   */
  private async persist(result: StoreResult): Promise<boolean> {
    const { id, outcome, status, reason } = result;
    const destination = this.destination.name;
    if (result.unsent === true) {
      try {
        await this.queue.markUnsent(id, destination);
      } catch (error) {
        this.log.error({ objectId: id, err: error }, 'putting back an object that was not sent failed');
        this.scheduleRetry();
      }
      return false;
    }
    this.lastResult = outcome;
    if (outcome !== 'stored' && outcome !== 'warning') this.lastError = reason;
    try {
      if (outcome === 'stored' || outcome === 'warning') await this.queue.markStored(id, destination, status ?? 0);
      else if (outcome === 'transient') await this.queue.markFailed(id, destination, reason, status);
      else await this.queue.markSetAside(id, destination, reason, status);
      return true;
    } catch (error) {
      this.log.error({ objectId: id, outcome, err: error }, 'recording a delivery result failed');
      this.scheduleRetry();
      return false;
    }
  }

  /** Logs a recorded result and emits its events. */
  private announce(result: StoreResult): void {
    const { id, outcome, status, reason } = result;
    const destination = this.destination.name;
    if (outcome === 'stored' || outcome === 'warning') {
      if (outcome === 'warning') this.log.warn({ objectId: id, status, reason }, 'object stored with a warning');
      else this.log.info({ objectId: id, status: status ?? 0 }, 'object stored');
      this.emitSafely('objectStored', () => this.emit('objectStored', { id, destination, status: status ?? 0, warning: outcome === 'warning' }));
      return;
    }
    if (outcome === 'transient') this.log.warn({ objectId: id, status, reason }, 'store failed, will retry');
    this.emitSafely('storeFailed', () => this.emit('storeFailed', { id, destination, reason, status, willRetry: outcome === 'transient' }));
    if (outcome === 'permanent') {
      this.log.warn({ objectId: id, status, reason }, 'object set aside');
      this.emitSafely('objectSetAside', () => this.emit('objectSetAside', { id, destination, reason, status }));
    }
  }

  /** Runs `emit`, logging a listener that throws, so that a listener cannot end the send loop. */
  private emitSafely(name: keyof SenderEvents, emit: () => void): void {
    try {
      emit();
    } catch (error) {
      this.log.error({ event: name, err: error }, 'sender event listener failed');
    }
  }

  /** Records whether the destination could be reached; reports a change once. */
  private updateLink(up: boolean, failureReason?: string): void {
    if (up === this.linkUp) return;
    this.linkUp = up;
    const reason = up ? undefined : failureReason;
    this.log.info({ up, reason }, 'link changed');
    const event: LinkChangedEvent = { destination: this.destination.name, up };
    if (reason !== undefined) event.reason = reason;
    this.emitSafely('linkChanged', () => this.emit('linkChanged', event));
  }

  private scheduleRetry(): void {
    if (this.nextAttemptAt !== undefined && this.nextAttemptAt > Date.now()) return;
    const delayMs = this.backoff.next();
    this.nextAttemptAt = Date.now() + delayMs;
    this.log.info({ delayMs, consecutiveFailures: this.backoff.failures }, 'retry scheduled');
  }
}

function contextKey(object: StoreObjectMetadata): string {
  return `${object.sopClassUid} ${object.transferSyntaxUid}`;
}

/** Returns the C-STORE transfer to a DICOM destination: one association for a batch and the batches that follow it while the queue has work. */
export function dimseTransfer(destination: DestinationConfig, callingAeTitle: string, log: Logger): Transfer {
  return (objects, control) => storeObjects({ destination, callingAeTitle, objects, log, signal: control.signal, onResult: control.onResult, more: control.more });
}
