import { EventEmitter } from 'node:events';
import { statfs } from 'node:fs/promises';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

/** An alarm an operator must see: raised once, cleared once the cause is gone. */
export interface SpoolAlarm {
  id: 'spool-full';
  severity: 'critical';
  reason: string;
}

export interface SpaceGuardEvents {
  alarmRaised: [alarm: SpoolAlarm];
  alarmCleared: [event: { id: SpoolAlarm['id'] }];
}

/** Spool content that the guard reads. */
export interface SpoolUsage {
  /** Total size of every object in the spool, in bytes. */
  bytes: number;
  /** Objects done for every destination, which may be removed to make room; oldest first. */
  retained: Array<{ id: string; bytes: number }>;
}

export interface SpaceGuardOptions {
  /** Folder whose filesystem is measured with statfs. */
  directory: string;
  /** Maximum total size of the objects, in bytes. */
  maxBytes: number;
  /** Free space to leave on the filesystem, in bytes; 0 turns the statfs check off. */
  minFreeBytes: number;
  log: Logger;
  usage: () => SpoolUsage;
  /** Removes a retained object if it is still done; resolves to the bytes freed (0 when it was kept). */
  evict: (id: string) => Promise<number>;
}

/**
 * Room for the state file and the filesystem's block rounding of an object,
 * in bytes. An estimate: a state file is under 2 KiB and blocks are 4 KiB on
 * ext4, XFS and tmpfs.
 */
export const PER_OBJECT_OVERHEAD_BYTES = 16 * 1024;

/**
 * Admission control for the spool: decides whether an object of a given size
 * fits under `maxBytes` and above `minFreeBytes` of free space, removing
 * retained objects (already delivered) oldest first to make room. It never
 * touches an object that still needs delivery. When there is no room it raises
 * the `spool-full` alarm, and clears it once an object would fit again.
 */
export class SpaceGuard extends EventEmitter<SpaceGuardEvents> {
  private readonly options: SpaceGuardOptions;
  private readonly log: Logger;
  /** Bytes of adds that passed the check and are being written. */
  private reservedBytes = 0;
  /** Admission checks run one at a time, so two adds cannot both count the same room. */
  private chain: Promise<unknown> = Promise.resolve();
  private active: { alarm: SpoolAlarm; rejectedBytes: number } | undefined;
  private statfsFailed = false;

  constructor(options: SpaceGuardOptions) {
    super();
    this.options = options;
    this.log = options.log;
  }

  get alarm(): SpoolAlarm | undefined {
    return this.active === undefined ? undefined : { ...this.active.alarm };
  }

  /**
   * Reserves room for an object of `bytes`, removing retained objects if needed.
   * Resolves to a function that ends the reservation once the object is written
   * or abandoned. Throws SPOOL_FULL when there is no room.
   */
  reserve(bytes: number): Promise<() => void> {
    const run = this.chain.then(() => this.reserveNow(bytes));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Removes retained objects, oldest first, until `bytes` plus overhead have
   * been freed or none is left. For a real ENOSPC, which the statfs check can
   * miss (other writers, reserved blocks, or the check turned off).
   */
  freeRetained(bytes: number): Promise<number> {
    const run = this.chain.then(() => this.evictOldest(bytes + PER_OBJECT_OVERHEAD_BYTES));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Raises (or updates) the alarm and returns the SPOOL_FULL error for the rejected add. */
  reject(reason: string, bytes: number, cause?: unknown): EndocapError {
    if (this.active === undefined) {
      this.active = { alarm: { id: 'spool-full', severity: 'critical', reason }, rejectedBytes: bytes };
      this.log.error({ alarm: 'spool-full', reason }, 'spool full, captures rejected');
      this.emit('alarmRaised', { ...this.active.alarm });
    } else {
      this.active = { alarm: { ...this.active.alarm, reason }, rejectedBytes: bytes };
      this.log.warn({ alarm: 'spool-full', reason }, 'object rejected, spool still full');
    }
    return new EndocapError(ErrorCodes.SPOOL_FULL, `spool full: ${reason}`, { retryable: true, cause });
  }

  /** Clears the alarm after an add succeeded. */
  added(): void {
    this.clear();
  }

  /** Clears the alarm when an object of the rejected size would now fit. */
  async checkCleared(): Promise<void> {
    if (this.active === undefined) return;
    const needed = this.active.rejectedBytes;
    const usage = this.options.usage();
    const retainedBytes = sum(usage.retained);
    if (usage.bytes - retainedBytes + this.reservedBytes + needed > this.options.maxBytes) return;
    const free = await this.freeBytes();
    if (free !== undefined && free + retainedBytes - needed - PER_OBJECT_OVERHEAD_BYTES < this.options.minFreeBytes) return;
    this.clear();
  }

  private clear(): void {
    if (this.active === undefined) return;
    this.active = undefined;
    this.log.info({ alarm: 'spool-full' }, 'spool has room again');
    this.emit('alarmCleared', { id: 'spool-full' });
  }

  private async reserveNow(bytes: number): Promise<() => void> {
    const { maxBytes, minFreeBytes } = this.options;
    // Two rounds: the first removes what the accounting says is needed, the
    // second covers a filesystem that freed less than the object sizes.
    for (let round = 0; round < 2; round += 1) {
      const usage = this.options.usage();
      const quotaExcess = usage.bytes + this.reservedBytes + bytes - maxBytes;
      const free = minFreeBytes > 0 ? await this.freeBytes() : undefined;
      const diskExcess = free === undefined ? 0 : minFreeBytes + bytes + PER_OBJECT_OVERHEAD_BYTES + this.reservedBytes - free;
      const excess = Math.max(quotaExcess, diskExcess);
      if (excess <= 0) {
        this.reservedBytes += bytes;
        let released = false;
        return () => {
          if (released) return;
          released = true;
          this.reservedBytes -= bytes;
        };
      }

      const retainedBytes = sum(usage.retained);
      if (retainedBytes < excess || round === 1) {
        const reason =
          quotaExcess > 0
            ? `${formatBytes(usage.bytes - retainedBytes + this.reservedBytes)} not yet delivered, spool.maxBytes is ${formatBytes(maxBytes)} and the object needs ${formatBytes(bytes)}`
            : `${formatBytes(free ?? 0)} free on the spool's filesystem, spool.minFreeBytes keeps ${formatBytes(minFreeBytes)} free and the object needs ${formatBytes(bytes)}`;
        throw this.reject(reason, bytes);
      }
      await this.evictOldest(excess);
    }
    throw new EndocapError(ErrorCodes.SPOOL_FULL, 'spool full: no room after removing retained objects', { retryable: true });
  }

  private async evictOldest(excess: number): Promise<number> {
    let freed = 0;
    for (const candidate of this.options.usage().retained) {
      if (freed >= excess) break;
      freed += await this.options.evict(candidate.id);
    }
    if (freed > 0) this.log.info({ bytesFreed: freed }, 'retained objects removed to make room');
    return freed;
  }

  /** Free bytes for unprivileged writers, or undefined when statfs fails (logged once). */
  private async freeBytes(): Promise<number | undefined> {
    try {
      const stats = await statfs(this.options.directory);
      this.statfsFailed = false;
      return stats.bavail * stats.bsize;
    } catch (error) {
      if (!this.statfsFailed) this.log.warn({ directory: this.options.directory, err: { message: errorMessage(error) } }, 'free space unknown, spool.minFreeBytes not checked');
      this.statfsFailed = true;
      return undefined;
    }
  }
}

function sum(objects: Array<{ bytes: number }>): number {
  return objects.reduce((total, object) => total + object.bytes, 0);
}

/** Formats a size in binary units for messages: `512 B`, `3.4 MiB`, `20.0 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}
