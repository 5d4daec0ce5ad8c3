import { EventEmitter } from 'node:events';
import path from 'node:path';
import { readObjectMetadata } from '../dicom/object-metadata.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { DeliveryJournal, readJournal, type JournalRecords } from './delivery-journal.js';
import { makeFolderDurably, syncDirectory } from './durable-file.js';
import { KeyedLock } from './keyed-lock.js';
import { ObjectFiles, isOutOfSpace } from './object-files.js';
import { ObjectIdGenerator, isObjectId } from './object-id.js';
import { queuedRecord, recoverSpool, type RecoveryReport } from './recovery.js';
import { SpaceGuard, type SpoolAlarm } from './space-guard.js';
import { cloneEntry, isDone, lastChangeTime } from './spool-entry.js';
import { SpoolLock } from './spool-lock.js';
import { collectStats, type SpoolStats } from './spool-stats.js';
import type { CommitmentQueue, DeliveryRecord, DeliveryState, ObjectMetadata, PendingOptions, SenderQueue, SpoolEntry, SpooledObjectStream } from './types.js';

export type { RecoveryReport } from './recovery.js';
export type { SpoolAlarm } from './space-guard.js';
export type { DestinationStats, SpoolStats } from './spool-stats.js';

/** A configured destination, with the one setting the spool needs besides its name. */
export interface SpoolDestination {
  name: string;
  /** True when the destination confirms Storage Commitment: an object is then done for it only once committed. */
  commitment: boolean;
}

export interface SpoolOptions {
  /** Folder of the spool; objects and their state files go to its `objects` subfolder, the lock file beside it. */
  directory: string;
  /** Every new object is queued for each of these destinations. */
  destinations: SpoolDestination[];
  log: Logger;
  /** Clock for ids, record times and retention; tests pass a fake one. */
  now?: () => Date;
  /** Hours an object done for every destination is kept for re-sending; 0 removes it once deliveries pause. Default 0. */
  retentionHours?: number;
  /** Maximum total size of the objects, in bytes. Default: no limit. */
  maxBytes?: number;
  /** Free space `add` leaves on the spool's filesystem, in bytes; 0 turns the check off. Default 0. */
  minFreeBytes?: number;
  /** How often retention ends are applied and a spool-full alarm is checked, in milliseconds. Default 60 000. */
  sweepIntervalMs?: number;
  /** With retention 0, done objects are removed once no other object became done for this long, in milliseconds. Default 500. */
  removalQuietMs?: number;
  /** Maximum time a recorded result waits for others to share its fdatasync, in milliseconds. Default 10. */
  syncDelayMs?: number;
}

/** Cause of an object's removal from the spool. */
export type RemovalCause = 'delivered' | 'retention-ended' | 'space-needed' | 'discarded';

export interface SpoolEvents {
  objectQueued: [entry: SpoolEntry];
  objectSetAside: [event: { id: string; destination: string; reason: string }];
  objectRemoved: [event: { id: string; delivered: boolean; cause: RemovalCause }];
  alarmRaised: [alarm: SpoolAlarm];
  alarmCleared: [event: { id: SpoolAlarm['id'] }];
}

/** Maximum length of a failure reason kept in a state file, in characters. */
const MAX_REASON_LENGTH = 500;
const DEFAULT_SWEEP_INTERVAL_MS = 60_000;
const DEFAULT_REMOVAL_QUIET_MS = 500;
const LOCK_FILE = 'spool.lock';
const JOURNAL_FILE = 'deliveries.journal';

/**
 * Durable queue of DICOM Part 10 objects on disk, one file per object plus one
 * JSON state file (its SpoolEntry) beside it.
 *
 * Durability: `add()` resolves only after the object file has been renamed into
 * place and its folder fsynced, and that rename is the commit point. A power cut
 * leaves either no object or a complete one. When the object was committed but
 * its state was not yet written, `open()` queues it again for every destination.
 *
 * Delivery record changes go to an append-only journal beside the objects
 * folder (see DeliveryJournal), where several records share one fdatasync. A
 * result (stored, failed, set aside, committed, queued again) is durable when
 * its call resolves. 'sending' is only written, not synced: it reads back as
 * queued after a restart whether or not it reached the disk. A record in the
 * journal overrides the one in the object's state file. State changes of one
 * object run one at a time.
 *
 * An object is done once every destination in its state has stored it, or
 * committed it where Storage Commitment is on. A done object is kept for
 * `retentionHours`, then removed oldest first. With retention 0 it is removed
 * once deliveries pause (no object became done for `removalQuietMs`), at the
 * periodic sweep, when its space is needed, or at close. With no destinations
 * configured, objects are kept. Only one process opens a spool folder at a time.
 */
export class Spool extends EventEmitter<SpoolEvents> implements SenderQueue, CommitmentQueue {
  private readonly root: string;
  private readonly files: ObjectFiles;
  private readonly destinations: SpoolDestination[];
  private readonly commitment: Map<string, boolean>;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly retentionMs: number;
  private readonly sweepIntervalMs: number;
  private readonly removalQuietMs: number;
  private readonly syncDelayMs: number | undefined;
  /** Results being recorded: waiting for their object's lock, their journal line or its fdatasync. */
  private resultsInFlight = 0;
  /** Set by flushResults() while results it covers are in flight, so that each syncs without waiting for its group. */
  private flushRequested = false;
  private readonly ids: ObjectIdGenerator;
  private readonly space: SpaceGuard;
  /** Entries by id, in id order (new ids are always larger). */
  private readonly entries = new Map<string, SpoolEntry>();
  /** Ids of object files that open() could not read and left for an operator. */
  private readonly leftInPlace = new Set<string>();
  private readonly locks = new KeyedLock();
  private readonly adding = new Set<Promise<unknown>>();
  /** SOP Instance UIDs of `addIfNew` calls in progress. */
  private readonly addingUids = new Set<string>();
  private lock: SpoolLock | undefined;
  private journal: DeliveryJournal | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private quietTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private opened = false;
  private closed = false;

  constructor(options: SpoolOptions) {
    super();
    this.root = options.directory;
    this.destinations = options.destinations.map((destination) => ({ ...destination }));
    this.commitment = new Map(this.destinations.map((destination) => [destination.name, destination.commitment]));
    this.log = options.log.child({ component: 'spool' });
    this.files = new ObjectFiles(path.join(options.directory, 'objects'), this.log);
    this.now = options.now ?? (() => new Date());
    this.retentionMs = Math.max(0, options.retentionHours ?? 0) * 3_600_000;
    this.sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    this.removalQuietMs = options.removalQuietMs ?? DEFAULT_REMOVAL_QUIET_MS;
    this.syncDelayMs = options.syncDelayMs;
    this.ids = new ObjectIdGenerator(() => this.now().getTime());
    this.space = new SpaceGuard({
      directory: this.root,
      maxBytes: options.maxBytes ?? Number.POSITIVE_INFINITY,
      minFreeBytes: options.minFreeBytes ?? 0,
      log: this.log,
      usage: () => this.usage(),
      evict: (id) => this.removeIfDone(id, 'space-needed'),
    });
    this.space.on('alarmRaised', (alarm) => this.emit('alarmRaised', alarm));
    this.space.on('alarmCleared', (event) => this.emit('alarmCleared', event));
  }

  /**
   * Takes the spool's lock, creates the folders, recovers what an earlier run
   * left and removes done objects whose retention has ended. Call once before
   * anything else. Throws SPOOL_LOCKED while another live process has the spool open.
   */
  async open(): Promise<RecoveryReport> {
    if (this.opened) throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, 'spool opened twice');
    let recovered: RecoveryReport;
    try {
      await makeFolderDurably(this.files.directory);
      this.lock = await SpoolLock.acquire(path.join(this.root, LOCK_FILE), this.log);
      await syncDirectory(this.root);
      const journalFile = path.join(this.root, JOURNAL_FILE);
      const journal = await readJournal(journalFile);
      const { entries, report, seenIds, unsavedStates } = await recoverSpool({
        directory: this.files.directory,
        destinations: this.destinations.map((destination) => destination.name),
        log: this.log,
        now: this.now,
        journal: journal.records,
      });
      report.journalLinesSkipped = journal.skippedLines;
      for (const id of seenIds) this.ids.observe(id);
      for (const entry of entries) this.entries.set(entry.id, entry);
      // The records of objects left in place for an operator stay in the journal, so that an object put back keeps its deliveries.
      for (const id of report.unreadableObjects) this.leftInPlace.add(id);
      this.journal = new DeliveryJournal({
        file: journalFile,
        log: this.log,
        isLive: (id) => this.entries.has(id) || this.leftInPlace.has(id),
        beforeCompaction: () => syncDirectory(this.files.directory),
        syncDelayMs: this.syncDelayMs,
      });
      const journalRecords = recordsOf(entries.filter((entry) => journal.records.has(entry.id) || unsavedStates.has(entry.id)));
      for (const id of this.leftInPlace) {
        const records = journal.records.get(id);
        if (records !== undefined) journalRecords.set(id, records);
      }
      await this.journal.open(journalRecords);
      this.files.startReading();
      this.opened = true;
      report.deliveredRemoved = await this.sweep();
      report.objects = this.entries.size;
      if (report.unconfiguredDestinations.length > 0) {
        this.log.warn({ destinations: report.unconfiguredDestinations }, 'spooled objects kept for destinations missing from the profile');
      }
      this.log.info({ ...report, unreadableObjects: report.unreadableObjects.length }, 'spool opened');
      recovered = report;
    } catch (error) {
      this.opened = false;
      await this.journal?.close().catch(() => undefined);
      this.journal = undefined;
      await this.lock?.release().catch(() => undefined);
      this.lock = undefined;
      if (error instanceof EndocapError && error.code === ErrorCodes.SPOOL_LOCKED) throw error;
      throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, `failed to open spool folder ${this.files.directory}: ${errorMessage(error)}`, { cause: error });
    }
    this.sweepTimer = setInterval(() => void this.runPeriodicSweep(), this.sweepIntervalMs);
    this.sweepTimer.unref();
    return recovered;
  }

  /** Waits for adds and state changes in progress and releases the lock; the spool rejects calls afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    clearTimeout(this.quietTimer);
    await Promise.allSettled([...this.adding, this.locks.idle(), this.sweeping]);
    if (this.retentionMs === 0) {
      // Objects done since deliveries last paused; a failure leaves them to the next open.
      await this.removeExpired().catch((error: unknown) => this.log.warn({ err: { message: errorMessage(error) } }, 'failed to remove delivered objects at close'));
    }
    this.files.close();
    try {
      await this.journal?.close();
    } catch (error) {
      this.log.warn({ err: { message: errorMessage(error) } }, 'failed to close the delivery journal');
    }
    try {
      await this.lock?.release();
    } catch (error) {
      this.log.warn({ err: { message: errorMessage(error) } }, 'failed to remove the spool lock file');
    }
    this.lock = undefined;
  }

  /**
   * Stores an object durably and queues it for every destination; resolves once it survives a power cut.
   * Throws SPOOL_FULL when the object does not fit even after removing retained objects.
   */
  async add(part10: Buffer, meta: ObjectMetadata): Promise<SpoolEntry> {
    this.assertOpen();
    return this.track(this.addNow(part10, meta));
  }

  /**
   * Adds an object unless one with the same SOP Instance UID is already in the
   * spool: then `added` is false and `entry` is the one in the spool. Throws
   * SPOOL_WRITE_FAILED while an object with that UID is being added.
   */
  async addIfNew(part10: Buffer, meta: ObjectMetadata): Promise<{ entry: SpoolEntry; added: boolean }> {
    this.assertOpen();
    const existing = this.findBySopInstanceUid(meta.sopInstanceUid);
    if (existing !== undefined) return { entry: existing, added: false };
    if (this.addingUids.has(meta.sopInstanceUid)) throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, 'an object with the same SOP Instance UID is being added');
    this.addingUids.add(meta.sopInstanceUid);
    try {
      return { entry: await this.track(this.addNow(part10, meta)), added: true };
    } finally {
      this.addingUids.delete(meta.sopInstanceUid);
    }
  }

  /** Returns a copy of every entry, oldest first. */
  list(): SpoolEntry[] {
    return [...this.entries.values()].map(cloneEntry);
  }

  get(id: string): SpoolEntry | undefined {
    const entry = this.entries.get(id);
    return entry === undefined ? undefined : cloneEntry(entry);
  }

  findBySopInstanceUid(sopInstanceUid: string): SpoolEntry | undefined {
    for (const entry of this.entries.values()) {
      if (entry.sopInstanceUid === sopInstanceUid) return cloneEntry(entry);
    }
    return undefined;
  }

  /** Copies of the entries queued for `destination`, oldest first; with a limit, only those are copied. */
  pending(destination: string, options: PendingOptions = {}): SpoolEntry[] {
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    const found: SpoolEntry[] = [];
    for (const entry of this.entries.values()) {
      if (found.length >= limit) break;
      if (entry.deliveries[destination]?.state !== 'queued' || options.skip?.(entry) === true) continue;
      found.push(cloneEntry(entry));
    }
    return found;
  }

  awaitingCommitment(destination: string): SpoolEntry[] {
    if (this.commitment.get(destination) !== true) return [];
    return this.withState(destination, 'stored');
  }

  async read(id: string, into?: Buffer): Promise<Buffer> {
    this.assertOpen();
    const entry = this.requireEntry(id);
    return this.files.read(id, into, entry.bytes);
  }

  async openStream(id: string): Promise<SpooledObjectStream> {
    this.assertOpen();
    this.requireEntry(id);
    return this.files.openStream(id);
  }

  stats(): SpoolStats {
    return collectStats({
      entries: this.entries.values(),
      destinations: this.destinations.map((destination) => destination.name),
      isDone: (entry) => this.isDone(entry),
      commitment: (name) => this.commitment.get(name) ?? false,
      alarm: this.space.alarm,
    });
  }

  /**
   * Syncs the delivery results being recorded at once, instead of waiting for
   * more to share the fdatasync. Results still waiting for their object's
   * lock (another destination's result holds it) sync at once too.
   */
  flushResults(): void {
    if (this.resultsInFlight > 0) this.flushRequested = true;
    this.journal?.flush();
  }

  async markSending(ids: string[], destination: string): Promise<void> {
    this.assertOpen();
    const marked: string[] = [];
    const results = await Promise.allSettled(
      ids.map((id) =>
        this.withLock(id, async () => {
          const entry = this.entries.get(id);
          const record = entry?.deliveries[destination];
          if (entry === undefined || record?.state !== 'queued') return;
          await this.saveRecord(entry, destination, { ...record, state: 'sending', updatedAt: this.timestamp() });
          marked.push(id);
        }),
      ),
    );
    const failure = results.find((result) => result.status === 'rejected');
    if (failure === undefined) return;
    // The caller will not send the batch, so none of it may stay 'sending'. On
    // disk 'sending' already reads back as queued, so memory alone is reset.
    for (const id of marked) {
      const record = this.entries.get(id)?.deliveries[destination];
      if (record?.state === 'sending') record.state = 'queued';
    }
    throw failure.reason;
  }

  async markStored(id: string, destination: string, status: number): Promise<void> {
    return this.recordResult(id, destination, 'stored', { status });
  }

  async markUnsent(id: string, destination: string): Promise<void> {
    this.assertOpen();
    return this.withLock(id, async () => {
      const entry = this.entries.get(id);
      const record = entry?.deliveries[destination];
      if (entry === undefined || record?.state !== 'sending') return;
      // Not synced: lost in a power cut, the 'sending' line before it reads back as queued with one attempt more.
      await this.saveRecord(entry, destination, { ...record, state: 'queued', updatedAt: this.timestamp() }, false);
    });
  }

  async markFailed(id: string, destination: string, reason: string, status?: number): Promise<void> {
    return this.recordResult(id, destination, 'queued', { reason, status });
  }

  async markSetAside(id: string, destination: string, reason: string, status?: number): Promise<void> {
    return this.recordResult(id, destination, 'set-aside', { reason, status });
  }

  /** Records a confirmed Storage Commitment, whatever the record's state was: the destination has the object. */
  async markCommitted(id: string, destination: string): Promise<void> {
    this.assertOpen();
    return this.withLock(id, async () => {
      const entry = this.requireEntry(id);
      const record = this.requireRecord(entry, destination);
      if (record.state === 'committed') return;
      const { lastStatus, attempts } = record;
      await this.saveRecord(entry, destination, { state: 'committed', attempts, ...(lastStatus === undefined ? {} : { lastStatus }), updatedAt: this.timestamp() });
      this.log.info({ objectId: id, destination }, 'object committed');
    });
  }

  /**
   * Queues an object again for `destination`: after a set-aside, or after a
   * store or commitment that must be repeated (a failed Storage Commitment, or
   * an operator re-sending a retained object). Queued and sending records are
   * left as they are.
   */
  async requeue(id: string, destination: string, reason?: string): Promise<void> {
    await this.requeueRecord(id, destination, reason);
  }

  /** Runs `requeue` and resolves to the record's state before it was queued again, or undefined when it was left as it was. */
  async requeueRecord(id: string, destination: string, reason?: string): Promise<DeliveryState | undefined> {
    this.assertOpen();
    let previous: DeliveryState | undefined;
    await this.withLock(id, async () => {
      const entry = this.requireEntry(id);
      const record = this.requireRecord(entry, destination);
      if (record.state === 'queued' || record.state === 'sending') return;
      const next: DeliveryRecord = { state: 'queued', attempts: record.attempts, updatedAt: this.timestamp() };
      if (reason !== undefined) next.lastError = reason.slice(0, MAX_REASON_LENGTH);
      await this.saveRecord(entry, destination, next);
      previous = record.state;
      this.log.info({ objectId: id, destination, previousState: record.state, reason }, 'object queued again');
    });
    return previous;
  }

  /** Operator action: deletes an object and its state whatever its deliveries. */
  async discard(id: string): Promise<void> {
    this.assertOpen();
    return this.withLock(id, async () => {
      this.requireEntry(id);
      await this.removeObject(id, 'discarded');
      this.log.warn({ objectId: id }, 'object discarded by operator');
    });
  }

  /** Removes done objects whose retention has ended, oldest first; resolves to how many were removed. */
  async sweep(): Promise<number> {
    this.assertOpen();
    const removed = await this.removeExpired();
    await this.space.checkCleared();
    return removed;
  }

  private async removeExpired(): Promise<number> {
    const now = this.now().getTime();
    const cause: RemovalCause = this.retentionMs === 0 ? 'delivered' : 'retention-ended';
    let removed = 0;
    for (const entry of [...this.entries.values()]) {
      if (!this.isDone(entry) || lastChangeTime(entry) + this.retentionMs > now) continue;
      if ((await this.removeIfDone(entry.id, cause)) > 0) removed += 1;
    }
    return removed;
  }

  private async addNow(part10: Buffer, meta: ObjectMetadata): Promise<SpoolEntry> {
    const found = readObjectMetadata(part10);
    if (found.sopInstanceUid !== meta.sopInstanceUid || found.sopClassUid !== meta.sopClassUid || found.transferSyntaxUid !== meta.transferSyntaxUid) {
      throw new EndocapError(ErrorCodes.DICOM_OBJECT_INVALID, 'object metadata differs from its File Meta Information');
    }

    const release = await this.space.reserve(part10.length);
    try {
      let entry: SpoolEntry;
      try {
        entry = await this.writeObject(part10, meta);
      } catch (error) {
        if (!isOutOfSpace(error)) throw error;
        // The statfs check passed (or is off) but the filesystem is full: make room once and try again.
        const reason = `no space left on the spool's filesystem for an object of ${part10.length} bytes`;
        if ((await this.space.freeRetained(part10.length)) === 0) throw this.space.reject(reason, part10.length, error);
        try {
          entry = await this.writeObject(part10, meta);
        } catch (retryError) {
          if (!isOutOfSpace(retryError)) throw retryError;
          throw this.space.reject(reason, part10.length, retryError);
        }
      }
      this.space.added();
      this.log.info({ objectId: entry.id, bytes: entry.bytes }, 'object queued');
      this.emit('objectQueued', cloneEntry(entry));
      return cloneEntry(entry);
    } finally {
      release();
    }
  }

  private async writeObject(part10: Buffer, meta: ObjectMetadata): Promise<SpoolEntry> {
    const id = this.ids.next();
    const deliveries: Record<string, DeliveryRecord> = {};
    for (const { name } of this.destinations) deliveries[name] = queuedRecord(this.now());
    const entry: SpoolEntry = { id, ...meta, bytes: part10.length, queuedAt: this.timestamp(), deliveries };
    await this.files.create(entry, part10);
    this.entries.set(id, entry);
    return entry;
  }

  private async recordResult(id: string, destination: string, state: DeliveryState, result: { reason?: string; status?: number | undefined }): Promise<void> {
    this.assertOpen();
    this.resultsInFlight += 1;
    try {
      await this.recordResultLocked(id, destination, state, result);
    } finally {
      this.resultsInFlight -= 1;
      if (this.resultsInFlight === 0) this.flushRequested = false;
    }
  }

  private recordResultLocked(id: string, destination: string, state: DeliveryState, result: { reason?: string; status?: number | undefined }): Promise<void> {
    return this.withLock(id, async () => {
      const entry = this.requireEntry(id);
      const record = this.requireRecord(entry, destination);
      // A store that repeats a confirmed commitment does not undo the confirmation.
      const nextState = state === 'stored' && record.state === 'committed' ? 'committed' : state;
      const updated: DeliveryRecord = { state: nextState, attempts: record.attempts + 1, updatedAt: this.timestamp() };
      if (result.reason !== undefined) updated.lastError = result.reason.slice(0, MAX_REASON_LENGTH);
      if (result.status !== undefined) updated.lastStatus = result.status;
      await this.saveRecord(entry, destination, updated);

      if (state === 'set-aside') {
        this.log.warn({ objectId: id, destination, status: result.status, reason: updated.lastError }, 'object set aside');
        this.emit('objectSetAside', { id, destination, reason: updated.lastError ?? '' });
      } else {
        this.log.debug({ objectId: id, destination, state: nextState, attempts: updated.attempts }, 'delivery recorded');
      }
    });
  }

  /**
   * Writes one delivery record to the journal; must run under the object's
   * lock. A done object is removed at once when retention is 0. When the write
   * fails, a record that was 'sending' becomes 'queued' in memory, as it would
   * be read back after a restart, so that the object is sent again without
   * waiting for a restart.
   */
  private async saveRecord(entry: SpoolEntry, destination: string, record: DeliveryRecord, durable = record.state !== 'sending'): Promise<void> {
    const next = cloneEntry(entry);
    next.deliveries[destination] = record;
    try {
      const journal = this.requireJournal();
      const written = journal.append(entry.id, destination, record, durable);
      if (durable && this.flushRequested) journal.flush();
      await written;
    } catch (error) {
      const previous = entry.deliveries[destination];
      if (previous?.state === 'sending') previous.state = 'queued';
      throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, `failed to record delivery of object ${entry.id}: ${errorMessage(error)}`, { cause: error, retryable: true });
    }
    this.entries.set(next.id, next);
    if (!this.isDone(next)) return;

    if (this.retentionMs > 0) {
      this.log.info({ objectId: next.id, retentionHours: this.retentionMs / 3_600_000 }, 'object delivered to every destination, kept for retention');
      this.checkSpaceLater();
      return;
    }
    // Deleting an object's files takes kernel time that the deliveries still under
    // way need, so the objects done meanwhile are removed together once deliveries
    // pause. The journal already contains the record that makes them done, so one
    // left by a crash is removed at the next open.
    this.sweepWhenQuiet();
  }

  /** Sweeps once no object has become done for `removalQuietMs`; each call restarts the wait. */
  private sweepWhenQuiet(): void {
    if (this.closed) return;
    if (this.quietTimer === undefined) {
      // A sweep under way may have listed the entries before the last object became done: wait for it, then sweep again.
      this.quietTimer = setTimeout(() => (this.sweeping === undefined ? void this.runPeriodicSweep() : this.sweepWhenQuiet()), this.removalQuietMs);
      this.quietTimer.unref();
    } else {
      this.quietTimer.refresh();
    }
  }

  /** Removes an object if it is still done; resolves to the bytes freed, 0 when it was kept. */
  private async removeIfDone(id: string, cause: RemovalCause): Promise<number> {
    let freed = 0;
    await this.withLock(id, async () => {
      const entry = this.entries.get(id);
      if (entry === undefined || !this.isDone(entry)) return;
      // The journal records a delivered object as done, so a removal lost in a power cut is repeated at the next open.
      await this.removeObject(id, cause, { syncFolder: cause !== 'delivered' });
      freed = entry.bytes;
      if (cause === 'delivered') this.log.info({ objectId: id }, 'object delivered to every destination and removed');
      else this.log.info({ objectId: id, cause }, 'retained object removed');
    });
    return freed;
  }

  private async removeObject(id: string, cause: RemovalCause, options: { syncFolder?: boolean } = {}): Promise<void> {
    await this.files.remove(id, options);
    this.entries.delete(id);
    this.journal?.forget(id);
    this.emit('objectRemoved', { id, delivered: cause !== 'discarded', cause });
  }

  /** Checks, without waiting, whether a spool-full alarm can be cleared. */
  private checkSpaceLater(): void {
    this.space.checkCleared().catch((error: unknown) => this.log.error({ err: { message: errorMessage(error) } }, 'spool space check failed'));
  }

  private async runPeriodicSweep(): Promise<void> {
    if (this.sweeping !== undefined || this.closed) return;
    this.sweeping = this.sweep()
      .then(() => undefined)
      .catch((error: unknown) => this.log.error({ err: { message: errorMessage(error) } }, 'spool sweep failed'));
    await this.sweeping;
    this.sweeping = undefined;
  }

  private withLock(id: string, task: () => Promise<void>): Promise<void> {
    return this.locks.run(id, task);
  }

  private async track<T>(operation: Promise<T>): Promise<T> {
    this.adding.add(operation);
    try {
      return await operation;
    } finally {
      this.adding.delete(operation);
    }
  }

  private usage(): { bytes: number; retained: Array<{ id: string; bytes: number }> } {
    let bytes = 0;
    const retained: Array<{ id: string; bytes: number }> = [];
    for (const entry of this.entries.values()) {
      bytes += entry.bytes;
      if (this.isDone(entry)) retained.push({ id: entry.id, bytes: entry.bytes });
    }
    return { bytes, retained };
  }

  private isDone(entry: SpoolEntry): boolean {
    return isDone(entry, (name) => this.commitment.get(name) ?? false);
  }

  private withState(destination: string, state: DeliveryState): SpoolEntry[] {
    return [...this.entries.values()].filter((entry) => entry.deliveries[destination]?.state === state).map(cloneEntry);
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

  private requireJournal(): DeliveryJournal {
    if (this.journal === undefined) throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, 'spool used before open()');
    return this.journal;
  }

  private assertOpen(): void {
    if (!this.opened || this.closed) throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, 'spool used before open() or after close()');
  }

  private timestamp(): string {
    return this.now().toISOString();
  }
}

/** Returns the delivery records of `entries` in the journal's form. */
function recordsOf(entries: SpoolEntry[]): JournalRecords {
  return new Map(entries.map((entry) => [entry.id, new Map(Object.entries(entry.deliveries))]));
}
