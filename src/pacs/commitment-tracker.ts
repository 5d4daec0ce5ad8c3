import { EventEmitter } from 'node:events';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { CommitmentQueue, SpoolEntry } from '../spool/types.js';
import { describeFailureReason, type CommitmentResult } from './commitment-messages.js';
import { CommitmentStore, type CommitmentObject, type PendingTransaction } from './commitment-store.js';

export type { CommitmentObject, PendingTransaction } from './commitment-store.js';

export interface ObjectCommittedEvent {
  id: string;
  destination: string;
  transactionUid: string;
}

export interface CommitmentFailedEvent {
  id: string;
  destination: string;
  transactionUid: string;
  /** Failure Reason (0008,1197) from the PACS. */
  failureReason: number;
  reason: string;
}

export interface CommitmentTrackerEvents {
  objectCommitted: [ObjectCommittedEvent];
  /** The PACS reported a failure for the object, which is queued to be sent again. */
  commitmentFailed: [CommitmentFailedEvent];
}

/** Association a result arrived on: the request's own, or one the PACS opened to the listener. */
export type ResultOrigin = 'same-association' | 'listener';

/** `unknown` when no pending transaction has the result's Transaction UID; nothing changes then. */
export type ApplyOutcome = 'applied' | 'unknown';

/** Receiver of commitment results: the tracker, or a fake in tests. */
export interface CommitmentResultSink {
  applyResult(result: CommitmentResult, origin: ResultOrigin): Promise<ApplyOutcome>;
}

export interface CommitmentTrackerOptions {
  /** Folder of the transaction files, normally `<spool folder>/commitments`. */
  directory: string;
  queue: CommitmentQueue;
  log: Logger;
  /** Age at which a transaction is dropped, whether its result arrived or not, in milliseconds. */
  maxTransactionAgeMs?: number;
  /** Clock; tests pass a fixed one. */
  now?: () => Date;
}

/** Results later than this are not worth waiting for: by then the objects were asked again many times. */
const defaultMaxTransactionAgeMs = 24 * 60 * 60 * 1_000;

/**
 * Pending Storage Commitment transactions of every destination and the effect
 * of their results on the spool. A transaction is recorded on disk before its
 * request is sent, so a result that arrives after a restart is still matched.
 * Committed objects are marked committed; failed ones are queued again to be
 * sent. A transaction is removed when its result arrives, when none of its
 * objects still waits for commitment (a newer transaction settled them), or
 * when it is older than `maxTransactionAgeMs`. Operations run one at a time.
 */
export class CommitmentTracker extends EventEmitter<CommitmentTrackerEvents> implements CommitmentResultSink {
  private readonly store: CommitmentStore;
  private readonly queue: CommitmentQueue;
  private readonly log: Logger;
  private readonly maxTransactionAgeMs: number;
  private readonly now: () => Date;
  private readonly transactions = new Map<string, PendingTransaction>();
  private tail: Promise<unknown> = Promise.resolve();

  constructor(options: CommitmentTrackerOptions) {
    super();
    this.log = options.log.child({ component: 'commitment' });
    this.store = new CommitmentStore({ directory: options.directory, log: this.log });
    this.queue = options.queue;
    this.maxTransactionAgeMs = options.maxTransactionAgeMs ?? defaultMaxTransactionAgeMs;
    this.now = options.now ?? (() => new Date());
  }

  /** Loads the transactions recorded by earlier runs; call once before anything else. */
  async open(): Promise<void> {
    for (const transaction of await this.store.open()) this.transactions.set(transaction.transactionUid, transaction);
    this.log.info({ pendingTransactions: this.transactions.size }, 'commitment transactions loaded');
    await this.prune();
  }

  /** Pending transactions of `destination`, oldest first. */
  pending(destination: string): PendingTransaction[] {
    return [...this.transactions.values()].filter((transaction) => transaction.destination === destination).map((transaction) => structuredClone(transaction));
  }

  /** Records a new transaction durably. Resolves once it survives a power cut, so the request may be sent. */
  begin(destination: string, entries: SpoolEntry[], transactionUid: string): Promise<PendingTransaction> {
    return this.serialize(async () => {
      const objects: CommitmentObject[] = entries.map((entry) => ({ id: entry.id, sopClassUid: entry.sopClassUid, sopInstanceUid: entry.sopInstanceUid }));
      const transaction: PendingTransaction = { transactionUid, destination, requestedAt: this.now().toISOString(), objects };
      await this.store.save(transaction);
      this.transactions.set(transactionUid, transaction);
      return structuredClone(transaction);
    });
  }

  /** Forgets a transaction whose request never reached the PACS. */
  discard(transactionUid: string): Promise<void> {
    return this.serialize(async () => {
      if (!this.transactions.has(transactionUid)) return;
      await this.store.remove(transactionUid);
      this.transactions.delete(transactionUid);
    });
  }

  /**
   * Applies a result to the spool. Only objects still stored and waiting for
   * commitment change: an object already committed, queued again or removed
   * by an earlier result is left as it is. A result for an unknown transaction
   * changes nothing.
   */
  applyResult(result: CommitmentResult, origin: ResultOrigin): Promise<ApplyOutcome> {
    return this.serialize(async () => {
      const transaction = this.transactions.get(result.transactionUid);
      if (!transaction) {
        this.log.warn(
          { transactionUid: result.transactionUid, origin, committed: result.committed.length, failed: result.failed.length },
          'commitment result for unknown transaction ignored',
        );
        return 'unknown';
      }

      const { destination, transactionUid } = transaction;
      const byInstance = new Map(transaction.objects.map((object) => [object.sopInstanceUid, object]));
      const reported = new Set<string>();
      let unknownReferences = 0;

      for (const reference of result.committed) {
        const object = byInstance.get(reference.sopInstanceUid);
        if (!object) {
          unknownReferences += 1;
          continue;
        }
        reported.add(object.id);
        if (!this.isWaiting(object.id, destination)) continue;
        await this.queue.markCommitted(object.id, destination);
        this.log.debug({ objectId: object.id, destination, transactionUid }, 'commitment confirmed for object');
        this.emitSafely(() => this.emit('objectCommitted', { id: object.id, destination, transactionUid }));
      }

      for (const failure of result.failed) {
        const object = byInstance.get(failure.sopInstanceUid);
        if (!object) {
          unknownReferences += 1;
          continue;
        }
        reported.add(object.id);
        if (!this.isWaiting(object.id, destination)) continue;
        const reason = describeFailureReason(failure.failureReason);
        await this.queue.requeue(object.id, destination, reason);
        this.log.warn({ objectId: object.id, destination, transactionUid, failureReason: failure.failureReason, reason }, 'commitment failed, object queued again');
        this.emitSafely(() => this.emit('commitmentFailed', { id: object.id, destination, transactionUid, failureReason: failure.failureReason, reason }));
      }

      const omitted = transaction.objects.filter((object) => !reported.has(object.id)).length;
      if (unknownReferences > 0 || omitted > 0) {
        // Omitted objects are asked again in a new transaction, because this one is removed below.
        this.log.warn({ destination, transactionUid, unknownReferences, omitted }, 'commitment result does not match its request');
      }
      this.log.info(
        { destination, transactionUid, origin, committed: result.committed.length, failed: result.failed.length },
        'commitment result applied',
      );
      await this.store.remove(transactionUid);
      this.transactions.delete(transactionUid);
      return 'applied';
    });
  }

  /** Removes transactions that no longer matter: too old, or none of their objects still waits for commitment. */
  prune(): Promise<void> {
    return this.serialize(async () => {
      const oldest = this.now().getTime() - this.maxTransactionAgeMs;
      for (const transaction of [...this.transactions.values()]) {
        const { transactionUid, destination } = transaction;
        const expired = Date.parse(transaction.requestedAt) < oldest;
        const settled = transaction.objects.every((object) => !this.isWaiting(object.id, destination));
        if (!expired && !settled) continue;
        await this.store.remove(transactionUid);
        this.transactions.delete(transactionUid);
        if (expired && !settled) this.log.warn({ destination, transactionUid }, 'commitment transaction expired without result');
        else this.log.debug({ destination, transactionUid }, 'settled commitment transaction removed');
      }
    });
  }

  /** True when the object is stored at the destination and not yet committed. */
  private isWaiting(id: string, destination: string): boolean {
    return this.queue.get(id)?.deliveries[destination]?.state === 'stored';
  }

  /** Runs `task` after every earlier task, so that two results or a result and a prune never interleave. */
  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(task);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Runs an emit so that a throwing listener cannot stop a result half applied. */
  private emitSafely(emit: () => void): void {
    try {
      emit();
    } catch (error) {
      this.log.error({ err: { message: errorMessage(error) } }, 'commitment event listener failed');
    }
  }
}
