import { readFile, readdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { readObjectMetadata } from '../dicom/object-metadata.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { TEMP_SUFFIX, syncDirectory, writeFileDurably } from './durable-file.js';
import type { JournalRecords } from './delivery-journal.js';
import { isObjectId } from './object-id.js';
import { parseSpoolEntry } from './spool-entry.js';
import type { DeliveryRecord, SpoolEntry } from './types.js';

export const OBJECT_SUFFIX = '.dcm';
export const STATE_SUFFIX = '.json';

/** Counts of the problems `Spool.open()` found and repaired. */
export interface RecoveryReport {
  /** Objects in the spool after recovery. */
  objects: number;
  /** Temp files of interrupted writes, removed. */
  tempFilesRemoved: number;
  /** Objects whose state file was missing, torn or inconsistent, re-queued for every destination. */
  statesRebuilt: number;
  /** State files without an object (left by an interrupted removal), removed. */
  orphanStatesRemoved: number;
  /** Objects done for every destination whose retention had ended (or was 0), removed by `Spool.open()`. */
  deliveredRemoved: number;
  /** Lines of the delivery journal that were not a complete record (a torn last line after a crash), skipped. */
  journalLinesSkipped: number;
  /** Delivery records left in 'sending' by the previous run, queued again. */
  sendingRequeued: number;
  /** Objects that got a queued record for a destination added to the profile since they were spooled. */
  destinationsAdded: number;
  /** Ids of object files whose File Meta Information cannot be read; left on disk for an operator. */
  unreadableObjects: string[];
  /** Destination names found in state files but absent from the profile; their records are kept. */
  unconfiguredDestinations: string[];
}

export interface RecoveryOptions {
  directory: string;
  destinations: string[];
  log: Logger;
  now: () => Date;
  /** Delivery records read from the journal; each overrides the record of its state file. */
  journal?: JournalRecords;
}

/**
 * Scans the objects folder after a start or a crash and repairs it. It deletes
 * no complete object: removing delivered ones is left to the spool's retention.
 * Returns the entries sorted by id and every id seen on disk.
 */
export async function recoverSpool(options: RecoveryOptions): Promise<{ entries: SpoolEntry[]; report: RecoveryReport; seenIds: string[]; unsavedStates: Set<string> }> {
  const { directory, log } = options;
  const report: RecoveryReport = {
    objects: 0,
    tempFilesRemoved: 0,
    statesRebuilt: 0,
    orphanStatesRemoved: 0,
    deliveredRemoved: 0,
    journalLinesSkipped: 0,
    sendingRequeued: 0,
    destinationsAdded: 0,
    unreadableObjects: [],
    unconfiguredDestinations: [],
  };

  const objectIds = new Set<string>();
  const stateIds = new Set<string>();
  // Ids of object names that are not regular files: their state stays, and new ids must not take them.
  const irregularIds = new Set<string>();
  // Ids whose state file name is not a regular file: the state is neither read nor written there.
  const irregularStateIds = new Set<string>();
  for (const file of await readdir(directory, { withFileTypes: true })) {
    const { name } = file;
    // A FIFO or a device would block the reads below, and a link or a folder
    // is nothing the spool wrote: each is left for an operator.
    if (!file.isFile()) {
      log.warn({ file: name }, 'spool file is not a regular file, left in place');
      const objectId = name.slice(0, -OBJECT_SUFFIX.length);
      const stateId = name.slice(0, -STATE_SUFFIX.length);
      if (name.endsWith(OBJECT_SUFFIX) && isObjectId(objectId)) {
        report.unreadableObjects.push(objectId);
        irregularIds.add(objectId);
      } else if (name.endsWith(STATE_SUFFIX) && isObjectId(stateId)) {
        irregularStateIds.add(stateId);
      }
      continue;
    }
    if (name.endsWith(TEMP_SUFFIX)) {
      await unlink(path.join(directory, name));
      report.tempFilesRemoved += 1;
    } else if (name.endsWith(OBJECT_SUFFIX) && isObjectId(name.slice(0, -OBJECT_SUFFIX.length))) {
      objectIds.add(name.slice(0, -OBJECT_SUFFIX.length));
    } else if (name.endsWith(STATE_SUFFIX) && isObjectId(name.slice(0, -STATE_SUFFIX.length))) {
      stateIds.add(name.slice(0, -STATE_SUFFIX.length));
    } else {
      log.warn({ file: name }, 'unexpected file in spool folder left in place');
    }
  }

  for (const id of stateIds) {
    if (objectIds.has(id) || irregularIds.has(id)) continue;
    await unlink(path.join(directory, id + STATE_SUFFIX));
    report.orphanStatesRemoved += 1;
  }
  if (report.tempFilesRemoved > 0 || report.orphanStatesRemoved > 0) await syncDirectory(directory);

  const entries: SpoolEntry[] = [];
  const unconfigured = new Set<string>();
  const unsavedStates = new Set<string>();
  for (const id of [...objectIds].sort()) {
    const stateWritable = !irregularStateIds.has(id);
    const entry = await recoverEntry(id, stateIds.has(id), stateWritable, options, report);
    if (entry === undefined) continue;
    if (!stateWritable) unsavedStates.add(id);
    for (const name of Object.keys(entry.deliveries)) {
      if (!options.destinations.includes(name)) unconfigured.add(name);
    }
    entries.push(entry);
  }

  report.objects = entries.length;
  report.unconfiguredDestinations = [...unconfigured].sort();
  return { entries, report, seenIds: [...new Set([...objectIds, ...stateIds, ...irregularIds, ...irregularStateIds])], unsavedStates };
}

/**
 * Loads one object's state, rebuilding it when needed and adding new
 * destinations. Without `stateWritable` a changed state is not written:
 * its records then live in the journal only.
 */
async function recoverEntry(id: string, hasState: boolean, stateWritable: boolean, options: RecoveryOptions, report: RecoveryReport): Promise<SpoolEntry | undefined> {
  const { directory, log } = options;
  const objectPath = path.join(directory, id + OBJECT_SUFFIX);
  const statePath = path.join(directory, id + STATE_SUFFIX);
  const { size, mtime } = await stat(objectPath);

  let entry = hasState ? parseSpoolEntry(await readFile(statePath, 'utf8')) : undefined;
  let changed = false;
  if (entry === undefined || entry.id !== id || entry.bytes !== size) {
    try {
      const metadata = readObjectMetadata(await readFile(objectPath));
      const deliveries: Record<string, DeliveryRecord> = {};
      for (const name of options.destinations) deliveries[name] = queuedRecord(options.now());
      entry = { id, ...metadata, bytes: size, queuedAt: mtime.toISOString(), deliveries };
    } catch (error) {
      log.error({ objectId: id, err: { message: errorMessage(error) } }, 'spooled object unreadable, left in place');
      report.unreadableObjects.push(id);
      return undefined;
    }
    const journalRecords = options.journal?.get(id)?.size ?? 0;
    const message = journalRecords > 0 ? 'spool state rebuilt from the object and the delivery journal' : 'spool state rebuilt, object queued for every destination';
    log.warn({ objectId: id, hadState: hasState, journalRecords }, message);
    report.statesRebuilt += 1;
    changed = true;
  }

  for (const [name, record] of options.journal?.get(id) ?? []) entry.deliveries[name] = record;

  const missing = options.destinations.filter((name) => entry.deliveries[name] === undefined);
  for (const name of missing) entry.deliveries[name] = queuedRecord(options.now());
  if (missing.length > 0) {
    report.destinationsAdded += 1;
    changed = true;
  }

  // The previous run stopped before the destination responded, so the send counts as a failed attempt.
  for (const [name, record] of Object.entries(entry.deliveries)) {
    if (record.state !== 'sending') continue;
    entry.deliveries[name] = { ...record, state: 'queued', attempts: record.attempts + 1, lastError: 'sending interrupted by a restart', updatedAt: options.now().toISOString() };
    report.sendingRequeued += 1;
    changed = true;
  }

  if (changed && stateWritable) await writeFileDurably(statePath, JSON.stringify(entry));
  if (changed && !stateWritable) log.warn({ objectId: id }, 'state file name is not a regular file, state kept in the delivery journal only');
  return entry;
}

export function queuedRecord(now: Date): DeliveryRecord {
  return { state: 'queued', attempts: 0, updatedAt: now.toISOString() };
}
