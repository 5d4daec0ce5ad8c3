import { writeSync } from 'node:fs';
import { open, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { TEMP_SUFFIX, syncDirectory } from './durable-file.js';
import { deliveryRecordSchema } from './spool-entry.js';
import type { DeliveryRecord } from './types.js';

/** Delivery records by object id, then by destination name. */
export type JournalRecords = Map<string, Map<string, DeliveryRecord>>;

const journalLineSchema = z.object({
  id: z.string(),
  destination: z.string(),
  record: deliveryRecordSchema,
});

/** Lines appended since the last compaction before the journal is compacted, at the least. */
const MIN_LINES_BEFORE_COMPACTION = 10_000;
const DEFAULT_SYNC_DELAY_MS = 10;
/**
 * On a disk whose fdatasync is faster than results arrive, each fdatasync
 * costs the event loop a trip through the thread pool. With groups of 32
 * instead of 8, forwarding 300 stills used 5 to 7% less CPU time on a 2-core
 * virtual machine (docs/benchmarks.md). A slower disk fills its groups while it syncs.
 */
const DEFAULT_SYNC_GROUP_LINES = 32;

export interface JournalReadResult {
  records: JournalRecords;
  /** Lines that are not a complete record: a torn tail left by a crash, or damage. */
  skippedLines: number;
}

/**
 * Reads a journal file; a missing file has no records. A later line for the
 * same object and destination replaces an earlier one. Lines that are not a
 * complete record are skipped: a crash during an append can leave a torn last
 * line, whose record was never reported as written.
 */
export async function readJournal(file: string): Promise<JournalReadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { records: new Map(), skippedLines: 0 };
    throw error;
  }
  const records: JournalRecords = new Map();
  let skippedLines = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const parsed = parseLine(line);
    if (parsed === undefined) {
      skippedLines += 1;
      continue;
    }
    let byDestination = records.get(parsed.id);
    if (byDestination === undefined) {
      byDestination = new Map();
      records.set(parsed.id, byDestination);
    }
    byDestination.set(parsed.destination, parsed.record);
  }
  return { records, skippedLines };
}

function parseLine(line: string): z.infer<typeof journalLineSchema> | undefined {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return undefined;
  }
  const result = journalLineSchema.safeParse(json);
  return result.success ? result.data : undefined;
}

function formatLine(id: string, destination: string, record: DeliveryRecord): string {
  return `${JSON.stringify({ id, destination, record })}\n`;
}

interface PendingLine {
  id: string;
  destination: string;
  /** Order of the append, so that a line synced late never replaces a later one. */
  sequence: number;
  text: string;
  durable: boolean;
  /** When the line was appended, for the fdatasync delay. */
  appendedAt: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface DeliveryJournalOptions {
  /** The journal file. */
  file: string;
  log: Logger;
  /** True while the object is in the spool; compaction drops the records of other ids. */
  isLive: (id: string) => boolean;
  /** Runs before a compaction drops records: it must make removals of object files durable. */
  beforeCompaction: () => Promise<void>;
  /** Lines appended since the last compaction before the journal is compacted, at the least. Default 10 000. */
  minLinesBeforeCompaction?: number;
  /** Maximum time a durable line waits for others to share its fdatasync, in milliseconds. Default 10. */
  syncDelayMs?: number;
  /** Durable lines that start an fdatasync without waiting. Default 32. */
  syncGroupLines?: number;
}

/** Counts of the journal's file operations since it was opened. */
export interface JournalCounts {
  lines: number;
  writes: number;
  syncs: number;
  compactions: number;
}

/**
 * Append-only file of delivery record changes, written with group commit. A
 * line that need not be durable is written at once. Durable lines wait until
 * `syncGroupLines` of them wait or the oldest has waited `syncDelayMs`, then
 * one write and one fdatasync cover them all. Lines that arrive during a write
 * or an fdatasync go with the next one. A record in the journal overrides the
 * record in the object's state file. When the journal contains many superseded lines, compaction
 * rewrites it with the last record of each object still in the spool, by temp
 * file and rename.
 */
export class DeliveryJournal {
  private readonly file: string;
  private readonly log: Logger;
  private readonly isLive: (id: string) => boolean;
  private readonly beforeCompaction: () => Promise<void>;
  private readonly minLinesBeforeCompaction: number;
  private readonly syncDelayMs: number;
  private readonly syncGroupLines: number;
  private syncTimer: NodeJS.Timeout | undefined;
  private readonly counts: JournalCounts = { lines: 0, writes: 0, syncs: 0, compactions: 0 };
  /** Last line written per object and destination, durable lines once synced: what a compaction keeps. */
  private readonly latest = new Map<string, Map<string, { sequence: number; text: string }>>();
  private latestCount = 0;
  private sequence = 0;
  private handle: FileHandle | undefined;
  /** Lines waiting for the next write. */
  private pending: PendingLine[] = [];
  /** Durable lines written and waiting for the next fdatasync. */
  private unsynced: PendingLine[] = [];
  private opening = false;
  private syncing = false;
  private compacting = false;
  /** Set by flush(): the durable lines waiting are synced without waiting for their group. */
  private flushRequested = false;
  /** True while a write of lines that need not be durable waits for the other lines of this turn. */
  private writeQueued = false;
  /** True once that wait is over: the next pump writes. */
  private writeDue = false;
  private idleWaiters: Array<() => void> = [];
  private linesSinceCompaction = 0;
  /** Set after a failed write, which may have left a partial line for the next write to end. */
  private partialLine = false;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(options: DeliveryJournalOptions) {
    this.file = options.file;
    this.log = options.log;
    this.isLive = options.isLive;
    this.beforeCompaction = options.beforeCompaction;
    this.minLinesBeforeCompaction = options.minLinesBeforeCompaction ?? MIN_LINES_BEFORE_COMPACTION;
    this.syncDelayMs = options.syncDelayMs ?? DEFAULT_SYNC_DELAY_MS;
    this.syncGroupLines = options.syncGroupLines ?? DEFAULT_SYNC_GROUP_LINES;
  }

  stats(): JournalCounts {
    return { ...this.counts };
  }

  /**
   * Starts a new journal that contains `records` (what recovery found, merged
   * with any changes it made) and nothing else, replacing the file atomically.
   */
  async open(records: JournalRecords): Promise<void> {
    for (const [id, byDestination] of records) {
      for (const [destination, record] of byDestination) this.remember({ id, destination, sequence: this.nextSequence(), text: formatLine(id, destination, record) });
    }
    this.compacting = true;
    try {
      await this.compact();
    } finally {
      this.compacting = false;
    }
  }

  /**
   * Appends one record. With `durable`, resolves once the record is on disk
   * (after fdatasync). Without it, resolves once the record is written to the
   * file: it then survives a killed process but not a power cut.
   */
  append(id: string, destination: string, record: DeliveryRecord, durable: boolean): Promise<void> {
    if (this.closed) return Promise.reject(new Error('delivery journal used after close'));
    return new Promise((resolve, reject) => {
      const line = { id, destination, sequence: this.nextSequence(), text: formatLine(id, destination, record), durable, appendedAt: performance.now(), resolve, reject };
      this.pending.push(line);
      this.pump();
    });
  }

  /**
   * Syncs the durable lines waiting now, without waiting for `syncGroupLines`
   * of them or for `syncDelayMs`: the caller expects no more lines soon.
   */
  flush(): void {
    if (this.closed) return;
    this.flushRequested = true;
    this.pump();
  }

  /** Drops the records of an object that left the spool. */
  forget(id: string): void {
    this.latestCount -= this.latest.get(id)?.size ?? 0;
    this.latest.delete(id);
  }

  /** Writes and syncs the lines still waiting, then closes the file. A second call waits for the first. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.pump();
      await this.idle();
      clearTimeout(this.syncTimer);
      this.syncTimer = undefined;
      await this.handle?.close();
      this.handle = undefined;
    })();
    return this.closing;
  }

  private idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return !this.opening && !this.syncing && !this.compacting && this.pending.length === 0 && this.unsynced.length === 0;
  }

  /** Starts whatever can run now: a write, an fdatasync, a compaction. */
  private pump(): void {
    if (this.compacting) return;
    if (this.shouldCompact()) {
      void this.runCompaction();
      return;
    }
    const syncDue = this.syncDue();
    if (!this.opening && this.pending.length > 0) {
      if (syncDue || this.writeDue) this.writeNext();
      else if (!this.writeQueued && this.pending.some((line) => !line.durable)) this.queueWrite();
    }
    if (!this.syncing && !this.opening && this.unsynced.length > 0 && syncDue) void this.syncNext();
    if (!syncDue) this.armSyncTimer();
    if (this.isIdle()) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /**
   * True when the durable lines waiting, written or not, should be synced now:
   * `syncGroupLines` of them wait, the oldest has waited `syncDelayMs`, or the
   * journal is closing. Waiting a little lets one write and one fdatasync cover
   * the results of several objects on a disk whose flush is faster than the
   * objects arrive. On a slower disk, the lines that arrive during an
   * fdatasync already make the group.
   */
  private syncDue(): boolean {
    const waiting = this.unsynced.length + this.pending.filter((line) => line.durable).length;
    if (waiting === 0) {
      this.flushRequested = false;
      return false;
    }
    return this.closed || this.flushRequested || waiting >= this.syncGroupLines || performance.now() - this.oldestDurableAppend() >= this.syncDelayMs;
  }

  private oldestDurableAppend(): number {
    return Math.min(this.unsynced[0]?.appendedAt ?? Infinity, this.pending.find((line) => line.durable)?.appendedAt ?? Infinity);
  }

  /** Calls pump when the oldest durable line has waited `syncDelayMs`. */
  private armSyncTimer(): void {
    if (this.syncTimer !== undefined) return;
    const oldest = this.oldestDurableAppend();
    if (oldest === Infinity) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.pump();
    }, Math.max(0, oldest + this.syncDelayMs - performance.now()));
  }

  /**
   * Schedules the write of the lines that need not be durable for the end of
   * the current turn. A sender marks a whole batch as sending in one turn, so
   * one write carries the batch instead of one write per object.
   */
  private queueWrite(): void {
    this.writeQueued = true;
    queueMicrotask(() => {
      this.writeQueued = false;
      // A write for a sync group may have taken the lines meanwhile.
      this.writeDue = this.pending.some((line) => !line.durable);
      this.pump();
    });
  }

  /**
   * Appends every waiting line with one blocking write, because a small append
   * to the page cache costs less than a trip through the thread pool. On a
   * 2-core virtual machine: 1.7 to 3.7 µs of CPU time against 35 to 53 µs
   * (docs/benchmarks.md). The fdatasync, which waits for the disk, stays on the pool.
   * NOTE: while the kernel throttles the process's writeback, this write blocks the event loop.
   */
  private writeNext(): void {
    if (this.handle === undefined) {
      void this.reopen();
      return;
    }
    this.writeDue = false;
    const group = this.pending.splice(0);
    try {
      const text = (this.partialLine ? '\n' : '') + group.map((line) => line.text).join('');
      writeAllSync(this.handle.fd, Buffer.from(text, 'utf8'));
      this.partialLine = false;
      this.linesSinceCompaction += group.length;
      this.counts.lines += group.length;
      this.counts.writes += 1;
      for (const line of group) {
        if (line.durable) {
          this.unsynced.push(line);
        } else {
          this.remember(line);
          line.resolve();
        }
      }
    } catch (error) {
      this.partialLine = true;
      // The flush requested for these lines is over, so the next lines wait for their group again.
      if (this.unsynced.length === 0) this.flushRequested = false;
      for (const line of group) line.reject(error);
    }
  }

  /** Opens the journal again after a compaction that failed before reopening it; the lines waiting fail if it cannot be opened. */
  private async reopen(): Promise<void> {
    this.opening = true;
    try {
      this.handle = await open(this.file, 'a');
    } catch (error) {
      for (const line of this.pending.splice(0)) line.reject(error);
    } finally {
      this.opening = false;
      this.pump();
    }
  }

  private async syncNext(): Promise<void> {
    this.syncing = true;
    const group = this.unsynced.splice(0);
    // Lines written after this point wait for a group again.
    this.flushRequested = false;
    try {
      if (this.handle === undefined) throw new Error('delivery journal is not open');
      await this.handle.datasync();
      this.counts.syncs += 1;
      for (const line of group) {
        this.remember(line);
        line.resolve();
      }
    } catch (error) {
      for (const line of group) line.reject(error);
    } finally {
      this.syncing = false;
      this.pump();
    }
  }

  private shouldCompact(): boolean {
    if (this.opening || this.syncing || this.unsynced.length > 0) return false;
    return this.linesSinceCompaction >= this.minLinesBeforeCompaction && this.linesSinceCompaction > 2 * this.latestCount;
  }

  private async runCompaction(): Promise<void> {
    this.compacting = true;
    try {
      await this.compact();
    } catch (error) {
      // The old journal, or the new one if the rename happened, contains every record.
      this.log.error({ err: { message: errorMessage(error) } }, 'delivery journal compaction failed');
      this.linesSinceCompaction = 0;
    } finally {
      this.compacting = false;
      this.pump();
    }
  }

  private nextSequence(): number {
    this.sequence += 1;
    return this.sequence;
  }

  private remember(line: Pick<PendingLine, 'id' | 'destination' | 'sequence' | 'text'>): void {
    let byDestination = this.latest.get(line.id);
    if (byDestination === undefined) {
      byDestination = new Map();
      this.latest.set(line.id, byDestination);
    }
    const known = byDestination.get(line.destination);
    if (known !== undefined && known.sequence > line.sequence) return;
    if (known === undefined) this.latestCount += 1;
    byDestination.set(line.destination, { sequence: line.sequence, text: line.text });
  }

  /**
   * Rewrites the journal with the last record of each live object: temp file,
   * fsync, rename, folder fsync. Runs only while no write or fdatasync does.
   */
  private async compact(): Promise<void> {
    await this.beforeCompaction();
    const lines: string[] = [];
    for (const [id, byDestination] of this.latest) {
      if (!this.isLive(id)) {
        this.forget(id);
        continue;
      }
      for (const { text } of byDestination.values()) lines.push(text);
    }

    const temp = this.file + TEMP_SUFFIX;
    try {
      const handle = await open(temp, 'w');
      try {
        await writeAll(handle, Buffer.from(lines.join(''), 'utf8'));
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
    await this.handle?.close();
    this.handle = undefined;
    await rename(temp, this.file);
    this.partialLine = false;
    this.linesSinceCompaction = 0;
    await syncDirectory(path.dirname(this.file));
    this.handle = await open(this.file, 'a');
    this.counts.compactions += 1;
  }
}

async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}

function writeAllSync(descriptor: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) offset += writeSync(descriptor, data, offset, data.length - offset);
}
