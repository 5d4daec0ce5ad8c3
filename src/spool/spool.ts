import { EventEmitter } from 'node:events';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { readObjectMetadata } from '../dicom/object-metadata.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { TEMP_SUFFIX, removeFilesDurably, syncDirectory, writeFileDurably } from './durable-file.js';
import { ObjectIdGenerator, isObjectId } from './object-id.js';
import { OBJECT_SUFFIX, STATE_SUFFIX, queuedRecord, recoverSpool, type RecoveryReport } from './recovery.js';
import { cloneEntry, isDelivered } from './spool-entry.js';
import type { DeliveryRecord, DeliveryState, ObjectMetadata, SenderQueue, SpoolEntry } from './types.js';

export type { RecoveryReport } from './recovery.js';

export interface SpoolOptions {
  /** Folder of the spool; objects and their state files go to its `objects` subfolder. */
  directory: string;
  /** Names of the configured destinations; every new object is queued for each. */
  destinations: string[];
  log: Logger;
  /** Clock for ids and record times; tests pass a fixed one. */
  now?: () => Date;
}

export interface DestinationStats {
  queued: number;
  setAside: number;
  /** Total size of the objects still queued, in bytes. */
  bytesQueued: number;
  /** ISO time the oldest queued object was spooled, or null when none is queued. */
  oldestQueuedAt: string | null;
}

export interface SpoolStats {
  /** Objects on disk, whatever their state. */
  objects: number;
  /** Total size of the objects on disk, in bytes. */
  bytes: number;
  /** One entry per configured destination. */
  destinations: Record<string, DestinationStats>;
}

export interface SpoolEvents {
  objectQueued: [entry: SpoolEntry];
  objectSetAside: [event: { id: string; destination: string; reason: string }];
  objectRemoved: [event: { id: string; delivered: boolean }];
}

/** Maximum length of a failure reason kept in a state file, in characters. */
const MAX_REASON_LENGTH = 500;

/**
 * Durable queue of DICOM Part 10 objects on disk, one file per object plus one
 * JSON state file (its SpoolEntry) beside it.
 *
 * Durability: `add()` resolves only after the object file has been renamed into
 * place and its folder fsynced, and that rename is the commit point. A power cut
 * leaves either no object or a complete one. When the object was committed but
 * its state was not yet written, `open()` queues it again for every destination.
 * State changes of one object run one at a time, written by temp file and rename.
 * An object is removed once every destination in its state has stored it. With
 * no destinations configured, objects are kept.
 */
export class Spool extends EventEmitter<SpoolEvents> implements SenderQueue {
  private readonly directory: string;
  private readonly destinations: string[];
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly ids: ObjectIdGenerator;
  /** Entries by id, in id order (new ids are always larger). */
  private readonly entries = new Map<string, SpoolEntry>();
  private readonly locks = new Map<string, Promise<void>>();
  private readonly adding = new Set<Promise<SpoolEntry>>();
  private opened = false;
  private closed = false;

  constructor(options: SpoolOptions) {
    super();
    this.directory = path.join(options.directory, 'objects');
    this.destinations = [...options.destinations];
    this.log = options.log.child({ component: 'spool' });
    this.now = options.now ?? (() => new Date());
    this.ids = new ObjectIdGenerator(() => this.now().getTime());
  }

  /** Creates the folders and recovers what an earlier run left; call once before anything else. */
  async open(): Promise<RecoveryReport> {
    if (this.opened) throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, 'spool opened twice');
    try {
      await mkdir(this.directory, { recursive: true });
      await syncDirectory(path.dirname(this.directory));
      const { entries, report, seenIds } = await recoverSpool({
        directory: this.directory,
        destinations: this.destinations,
        log: this.log,
        now: this.now,
      });
      for (const id of seenIds) this.ids.observe(id);
      for (const entry of entries) this.entries.set(entry.id, entry);
      this.opened = true;
      if (report.unconfiguredDestinations.length > 0) {
        this.log.warn({ destinations: report.unconfiguredDestinations }, 'spooled objects kept for destinations missing from the profile');
      }
      this.log.info({ ...report, unreadableObjects: report.unreadableObjects.length }, 'spool opened');
      return report;
    } catch (error) {
      throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, `failed to open spool folder ${this.directory}: ${errorMessage(error)}`, { cause: error });
    }
  }

  /** Waits for adds and state changes in progress; the spool rejects calls afterwards. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.adding, ...this.locks.values()]);
  }

  /** Stores an object durably and queues it for every destination; resolves once it survives a power cut. */
  async add(part10: Buffer, meta: ObjectMetadata): Promise<SpoolEntry> {
    this.assertOpen();
    const adding = this.addNow(part10, meta);
    this.adding.add(adding);
    try {
      return await adding;
    } finally {
      this.adding.delete(adding);
    }
  }

  private async addNow(part10: Buffer, meta: ObjectMetadata): Promise<SpoolEntry> {
    const found = readObjectMetadata(part10);
    if (found.sopInstanceUid !== meta.sopInstanceUid || found.sopClassUid !== meta.sopClassUid || found.transferSyntaxUid !== meta.transferSyntaxUid) {
      throw new EndocapError(ErrorCodes.DICOM_OBJECT_INVALID, 'object metadata differs from its File Meta Information');
    }

    const id = this.ids.next();
    const objectPath = this.objectPath(id);
    const temp = objectPath + TEMP_SUFFIX;
    const queuedAt = this.now().toISOString();
    const deliveries: Record<string, DeliveryRecord> = {};
    for (const name of this.destinations) deliveries[name] = queuedRecord(this.now());
    const entry: SpoolEntry = { id, ...meta, bytes: part10.length, queuedAt, deliveries };

    let committed = false;
    try {
      const handle = await open(temp, 'wx');
      try {
        await handle.writeFile(part10);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, objectPath);
      committed = true;
      await syncDirectory(this.directory);
      await writeFileDurably(this.statePath(id), JSON.stringify(entry));
    } catch (error) {
      await this.discardFailedAdd(id, committed);
      throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, `failed to spool object ${id}: ${errorMessage(error)}`, { cause: error, retryable: true });
    }

    this.entries.set(id, entry);
    this.log.info({ objectId: id, bytes: entry.bytes }, 'object queued');
    this.emit('objectQueued', cloneEntry(entry));
    return cloneEntry(entry);
  }

  /** Returns a copy of every entry, oldest first. */
  list(): SpoolEntry[] {
    return [...this.entries.values()].map(cloneEntry);
  }

  get(id: string): SpoolEntry | undefined {
    const entry = this.entries.get(id);
    return entry === undefined ? undefined : cloneEntry(entry);
  }

  pending(destination: string): SpoolEntry[] {
    return [...this.entries.values()].filter((entry) => entry.deliveries[destination]?.state === 'queued').map(cloneEntry);
  }

  async read(id: string): Promise<Buffer> {
    this.assertOpen();
    this.requireEntry(id);
    try {
      return await readFile(this.objectPath(id));
    } catch (error) {
      throw new EndocapError(ErrorCodes.SPOOL_CORRUPT_ENTRY, `failed to read spooled object ${id}: ${errorMessage(error)}`, { cause: error });
    }
  }

  stats(): SpoolStats {
    const stats: SpoolStats = { objects: this.entries.size, bytes: 0, destinations: {} };
    for (const name of this.destinations) stats.destinations[name] = { queued: 0, setAside: 0, bytesQueued: 0, oldestQueuedAt: null };
    for (const entry of this.entries.values()) {
      stats.bytes += entry.bytes;
      for (const [name, record] of Object.entries(entry.deliveries)) {
        const destination = stats.destinations[name];
        if (destination === undefined) continue;
        if (record.state === 'queued') {
          destination.queued += 1;
          destination.bytesQueued += entry.bytes;
          // Entries are visited oldest first, so the first queued one is the oldest.
          destination.oldestQueuedAt ??= entry.queuedAt;
        } else if (record.state === 'set-aside') {
          destination.setAside += 1;
        }
      }
    }
    return stats;
  }

  async markStored(id: string, destination: string, status: number): Promise<void> {
    return this.updateDelivery(id, destination, 'stored', { status });
  }

  async markFailed(id: string, destination: string, reason: string, status?: number): Promise<void> {
    return this.updateDelivery(id, destination, 'queued', { reason, status });
  }

  async markSetAside(id: string, destination: string, reason: string, status?: number): Promise<void> {
    return this.updateDelivery(id, destination, 'set-aside', { reason, status });
  }

  /** Operator action: queues a set-aside object again for `destination`. */
  async requeue(id: string, destination: string): Promise<void> {
    this.assertOpen();
    return this.withLock(id, async () => {
      const entry = this.requireEntry(id);
      const record = this.requireRecord(entry, destination);
      if (record.state !== 'set-aside') return;
      const next = cloneEntry(entry);
      next.deliveries[destination] = { state: 'queued', attempts: record.attempts, updatedAt: this.now().toISOString() };
      await this.saveState(next);
      this.log.info({ objectId: id, destination }, 'object queued again by operator');
    });
  }

  /** Operator action: deletes an object and its state whatever its deliveries. */
  async discard(id: string): Promise<void> {
    this.assertOpen();
    return this.withLock(id, async () => {
      this.requireEntry(id);
      await this.removeObject(id, false);
      this.log.warn({ objectId: id }, 'object discarded by operator');
    });
  }

  private async updateDelivery(id: string, destination: string, state: DeliveryState, result: { reason?: string; status?: number | undefined }): Promise<void> {
    this.assertOpen();
    return this.withLock(id, async () => {
      const entry = this.requireEntry(id);
      const record = this.requireRecord(entry, destination);
      const next = cloneEntry(entry);
      const updated: DeliveryRecord = { state, attempts: record.attempts + 1, updatedAt: this.now().toISOString() };
      if (result.reason !== undefined) updated.lastError = result.reason.slice(0, MAX_REASON_LENGTH);
      if (result.status !== undefined) updated.lastStatus = result.status;
      next.deliveries[destination] = updated;

      if (isDelivered(next)) {
        await this.removeObject(id, true);
        this.log.info({ objectId: id }, 'object stored on every destination and removed');
        return;
      }
      await this.saveState(next);
      if (state === 'set-aside') {
        this.log.warn({ objectId: id, destination, status: result.status, reason: updated.lastError }, 'object set aside');
        this.emit('objectSetAside', { id, destination, reason: updated.lastError ?? '' });
      } else {
        this.log.debug({ objectId: id, destination, state, attempts: updated.attempts }, 'delivery recorded');
      }
    });
  }

  private async saveState(entry: SpoolEntry): Promise<void> {
    try {
      await writeFileDurably(this.statePath(entry.id), JSON.stringify(entry));
    } catch (error) {
      throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, `failed to write state of object ${entry.id}: ${errorMessage(error)}`, { cause: error, retryable: true });
    }
    this.entries.set(entry.id, entry);
  }

  /**
   * Deletes the object file before its state file: a crash in between leaves a
   * state without object, which `open()` removes, rather than an object that
   * would be sent again.
   */
  private async removeObject(id: string, delivered: boolean): Promise<void> {
    try {
      await removeFilesDurably(this.directory, [id + OBJECT_SUFFIX, id + STATE_SUFFIX]);
    } catch (error) {
      throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, `failed to remove object ${id}: ${errorMessage(error)}`, { cause: error, retryable: true });
    }
    this.entries.delete(id);
    this.emit('objectRemoved', { id, delivered });
  }

  private async discardFailedAdd(id: string, committed: boolean): Promise<void> {
    // The caller gets an error and the object was never acknowledged, so it is
    // removed rather than left to be re-queued at the next open.
    const names = committed ? [id + OBJECT_SUFFIX, id + STATE_SUFFIX, id + STATE_SUFFIX + TEMP_SUFFIX] : [id + OBJECT_SUFFIX + TEMP_SUFFIX];
    for (const name of names) {
      try {
        await unlink(path.join(this.directory, name));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
          this.log.error({ objectId: id, file: name, err: { message: errorMessage(error) } }, 'failed to remove file of failed add');
        }
      }
    }
  }

  /** Runs `task` after every earlier task for the same object, so concurrent marks from two senders do not overwrite each other. */
  private withLock(id: string, task: () => Promise<void>): Promise<void> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const run = previous.then(task);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(id, settled);
    void settled.then(() => {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    });
    return run;
  }

  private requireEntry(id: string): SpoolEntry {
    const entry = isObjectId(id) ? this.entries.get(id) : undefined;
    if (entry === undefined) throw new EndocapError(ErrorCodes.SPOOL_UNKNOWN_OBJECT, `no spooled object with id ${id}`);
    return entry;
  }

  private requireRecord(entry: SpoolEntry, destination: string): DeliveryRecord {
    const record = entry.deliveries[destination];
    if (record === undefined) throw new EndocapError(ErrorCodes.SPOOL_UNKNOWN_OBJECT, `object ${entry.id} has no delivery record for destination ${destination}`);
    return record;
  }

  private assertOpen(): void {
    if (!this.opened || this.closed) throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, 'spool used before open() or after close()');
  }

  private objectPath(id: string): string {
    return path.join(this.directory, id + OBJECT_SUFFIX);
  }

  private statePath(id: string): string {
    return path.join(this.directory, id + STATE_SUFFIX);
  }
}
