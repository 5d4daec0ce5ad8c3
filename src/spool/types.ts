import type { Readable } from 'node:stream';

/**
 * Contract between the spool (durable storage of DICOM objects on disk) and
 * the senders that forward them. The spool imports no network code.
 */

/**
 * Delivery state of one object for one destination:
 * - queued: waiting to be sent (again);
 * - sending: taken by a sender; read back as queued after a restart;
 * - stored: the destination answered success (or a warning);
 * - committed: the destination confirmed Storage Commitment for it;
 * - set-aside: rejected permanently; kept until an operator acts.
 * With commitment disabled for a destination, stored is final for it.
 */
export type DeliveryState = 'queued' | 'sending' | 'stored' | 'committed' | 'set-aside';

export interface DeliveryRecord {
  state: DeliveryState;
  /** Attempts made so far. */
  attempts: number;
  /** Reason of the last failure or of the set-aside, without patient data. */
  lastError?: string;
  /** DIMSE status of the last response, when there was one. */
  lastStatus?: number;
  /** ISO time of the last state change. */
  updatedAt: string;
}

export interface SpoolEntry {
  /** Internal object id: safe to log and publish. */
  id: string;
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** Size of the Part 10 file in bytes. */
  bytes: number;
  /** ISO time the object was made durable. */
  queuedAt: string;
  /** One record per destination name. */
  deliveries: Record<string, DeliveryRecord>;
}

export interface ObjectMetadata {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
}

/** An open Part 10 file: its size, taken from the open file, and a stream of its bytes. */
export interface SpooledObjectStream {
  bytes: number;
  /** Closes the file when read to the end or destroyed; a caller that stops early must destroy it. */
  stream: Readable;
}

/** Options of `SenderQueue.pending`: how many queued entries, and which ones to leave out. */
export interface PendingOptions {
  /** At most this many, the oldest. */
  limit?: number;
  /** Leaves out entries for which this returns true. */
  skip?: (entry: Readonly<SpoolEntry>) => boolean;
}

/** Spool operations a sender uses. */
export interface SenderQueue {
  /** Entries still queued for `destination`, oldest first. A queue may ignore `options`, so callers still check what they get. */
  pending(destination: string, options?: PendingOptions): SpoolEntry[];
  /**
   * Records that a sender took these objects, so `pending` leaves them out until
   * a result is recorded. After a restart they are queued again. Ids no longer
   * in the queue are skipped.
   */
  markSending(ids: string[], destination: string): Promise<void>;
  /**
   * Reads the Part 10 bytes of an object. When `into` is given and longer
   * than the object, the bytes may go there and the result be a view of it.
   */
  read(id: string, into?: Buffer): Promise<Buffer>;
  /**
   * Opens the Part 10 file of an object for reading in chunks, so that a large
   * clip is never held whole in memory. Optional: senders fall back to `read`.
   */
  openStream?(id: string): Promise<SpooledObjectStream>;
  /** Records a success; the object is done for `destination` unless it waits for Storage Commitment there. */
  markStored(id: string, destination: string, status: number): Promise<void>;
  /**
   * Puts back an object taken with markSending that was never sent, as it
   * was before: the attempt does not count. Ids not being sent are skipped.
   */
  markUnsent(id: string, destination: string): Promise<void>;
  /** Records a transient failure; the object stays queued. */
  markFailed(id: string, destination: string, reason: string, status?: number): Promise<void>;
  /** Records a permanent rejection; the object is kept and not retried. */
  markSetAside(id: string, destination: string, reason: string, status?: number): Promise<void>;
  /**
   * Makes the results being recorded durable at once, those whose mark call
   * has not resolved yet included, instead of waiting for more results to
   * share the flush. A sender calls it when no more objects are in flight. Optional.
   */
  flushResults?(): void;
}

/** Spool operations the Storage Commitment requester uses. */
export interface CommitmentQueue {
  /** Entries stored at `destination` and not yet committed, oldest first. */
  awaitingCommitment(destination: string): SpoolEntry[];
  /** Records a confirmed commitment. */
  markCommitted(id: string, destination: string): Promise<void>;
  /** Puts an object back in the queue for `destination`, for example after a commitment failure. */
  requeue(id: string, destination: string, reason?: string): Promise<void>;
  get(id: string): SpoolEntry | undefined;
}
