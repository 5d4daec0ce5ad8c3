import { readObjectMetadata } from '../dicom/object-metadata.js';
import { sopClassName } from '../dicom/sop-class-names.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Spool } from './spool.js';
import type { DeliveryRecord, DeliveryState, SpoolEntry } from './types.js';

/**
 * The operator's queue actions, run by whichever process owns the spool: the
 * daemon for requests on its control socket, or `endocap queue` itself while
 * the daemon is stopped.
 */

/** One object as `queue list` shows it. Patient data is left out: no SOP Instance UID, no data set values. */
export interface QueueItem {
  id: string;
  queuedAt: string;
  bytes: number;
  sopClassUid: string;
  sopClassName: string;
  deliveries: Record<string, DeliveryRecord>;
}

export const deliveryStates: readonly DeliveryState[] = ['queued', 'sending', 'stored', 'committed', 'set-aside'];

/** Lists the objects, oldest first; with `state`, only those with at least one delivery in that state. */
export function listQueue(spool: Spool, state?: DeliveryState): QueueItem[] {
  return spool
    .list()
    .filter((entry) => state === undefined || Object.values(entry.deliveries).some((record) => record.state === state))
    .map((entry) => ({
      id: entry.id,
      queuedAt: entry.queuedAt,
      bytes: entry.bytes,
      sopClassUid: entry.sopClassUid,
      sopClassName: sopClassName(entry.sopClassUid),
      deliveries: entry.deliveries,
    }));
}

export interface RetryRequest {
  /** Objects to retry; ignored when `allSetAside` is true. */
  ids?: string[];
  /** Retries every set-aside delivery. */
  allSetAside?: boolean;
  /** Limits the retry to this destination. */
  destination?: string;
}

export interface RetryResult {
  requeued: Array<{ id: string; destination: string; previousState: DeliveryState }>;
  /** Objects named in the request that were not queued again, with the reason. */
  problems: Array<{ id: string; reason: string }>;
}

/**
 * Queues deliveries again. With `allSetAside`, every set-aside delivery. For a
 * named object, its set-aside deliveries; an object already done for every
 * destination (kept for retention) is sent again to each of them. With
 * `destination`, only that destination's delivery, when set aside, stored or committed.
 */
export async function retryObjects(spool: Spool, request: RetryRequest): Promise<RetryResult> {
  const result: RetryResult = { requeued: [], problems: [] };
  const reason = 'queued again by an operator';

  if (request.allSetAside === true) {
    for (const entry of spool.list()) {
      for (const [destination, record] of Object.entries(entry.deliveries)) {
        if (record.state !== 'set-aside' || (request.destination !== undefined && destination !== request.destination)) continue;
        const previousState = await spool.requeueRecord(entry.id, destination, reason);
        if (previousState !== undefined) result.requeued.push({ id: entry.id, destination, previousState });
      }
    }
    return result;
  }

  for (const id of request.ids ?? []) {
    const entry = spool.get(id);
    if (entry === undefined) {
      result.problems.push({ id, reason: `no spooled object with id ${id}` });
      continue;
    }
    const destinations = retryTargets(entry, request.destination);
    if (typeof destinations === 'string') {
      result.problems.push({ id, reason: destinations });
      continue;
    }
    for (const destination of destinations) {
      try {
        const previousState = await spool.requeueRecord(id, destination, reason);
        if (previousState !== undefined) result.requeued.push({ id, destination, previousState });
      } catch (error) {
        result.problems.push({ id, reason: errorMessage(error) });
      }
    }
  }
  return result;
}

/** Destinations to queue `entry` again for, or the reason there are none. */
function retryTargets(entry: SpoolEntry, only: string | undefined): string[] | string {
  const records = Object.entries(entry.deliveries);
  if (only !== undefined) {
    const record = entry.deliveries[only];
    if (record === undefined) return `object ${entry.id} has no delivery for destination ${only}`;
    if (record.state === 'queued' || record.state === 'sending') return `object ${entry.id} is already ${record.state} for ${only}`;
    return [only];
  }
  const setAside = records.filter(([, record]) => record.state === 'set-aside').map(([name]) => name);
  if (setAside.length > 0) return setAside;
  if (records.length > 0 && records.every(([, record]) => record.state === 'stored' || record.state === 'committed')) return records.map(([name]) => name);
  return `object ${entry.id} has no set-aside delivery and is not yet delivered everywhere; name a --destination to send it there again`;
}

export interface ExportedObject {
  entry: SpoolEntry;
  part10: Buffer;
}

export async function readForExport(spool: Spool, id: string): Promise<ExportedObject> {
  const entry = spool.get(id);
  if (entry === undefined) throw new EndocapError(ErrorCodes.SPOOL_UNKNOWN_OBJECT, `no spooled object with id ${id}`);
  return { entry, part10: await spool.read(id) };
}

export interface ImportResult {
  /** `duplicate`: an object with the same SOP Instance UID was already in the spool and nothing was added. */
  outcome: 'imported' | 'duplicate';
  id: string;
}

/**
 * Adds a Part 10 file to the spool for every destination. Throws
 * DICOM_OBJECT_INVALID when it is not a Part 10 file with the three UIDs of its
 * File Meta Information, and SPOOL_FULL when there is no room.
 */
export async function importObject(spool: Spool, part10: Buffer): Promise<ImportResult> {
  const metadata = readObjectMetadata(part10);
  const { entry, added } = await spool.addIfNew(part10, metadata);
  return { outcome: added ? 'imported' : 'duplicate', id: entry.id };
}
