import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { TEMP_SUFFIX, removeFilesDurably, syncDirectory, writeFileDurably, writeFileFlushed } from './durable-file.js';
import { OBJECT_SUFFIX, STATE_SUFFIX } from './recovery.js';
import { FileReadThread, READ_THREAD_STOPPED, isShared } from './file-read-thread.js';
import type { SpoolEntry, SpooledObjectStream } from './types.js';

/**
 * The files of spooled objects: `<id>.dcm` with the Part 10 bytes and
 * `<id>.json` with the SpoolEntry, in one folder. Callers serialise writes per id.
 */
export class ObjectFiles {
  readonly directory: string;
  private readonly log: Logger;
  private readonly reader = new FileReadThread();

  constructor(directory: string, log: Logger) {
    this.directory = directory;
    this.log = log;
  }

  /**
   * Writes a new object, then its state. The rename of the object file is the
   * commit point; fsyncs make it survive a power cut. On failure whatever was
   * written is removed, and the error is rethrown: ENOSPC and EDQUOT as they
   * are, so that the caller can make room, anything else as SPOOL_WRITE_FAILED.
   */
  async create(entry: SpoolEntry, part10: Buffer): Promise<void> {
    const objectPath = this.objectPath(entry.id);
    const temp = objectPath + TEMP_SUFFIX;
    let committed = false;
    try {
      await writeFileFlushed(temp, part10, 'wx');
      await rename(temp, objectPath);
      committed = true;
      await syncDirectory(this.directory);
      await writeFileDurably(this.statePath(entry.id), JSON.stringify(entry));
    } catch (error) {
      await this.discardFailedCreate(entry.id, committed);
      if (isOutOfSpace(error)) throw error;
      throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, `failed to spool object ${entry.id}: ${errorMessage(error)}`, { cause: error, retryable: true });
    }
  }

  /**
   * Reads an object file whole. With `into` longer than the file, the bytes go
   * there and the result is a view of it, so that a sender can reuse one
   * buffer for many objects instead of allocating one per object; when its
   * memory is shared, the file is read on the spool's read thread. `bytes`, the
   * size the spool recorded, saves an fstat: one byte more is requested, so a
   * file that grew is noticed.
   */
  async read(id: string, into?: Buffer, bytes?: number): Promise<Buffer> {
    if (into !== undefined && bytes !== undefined && into.length > bytes && isShared(into)) return this.readOnThread(id, into, bytes);
    let handle: FileHandle | undefined;
    try {
      handle = await open(this.objectPath(id), 'r');
      const size = bytes ?? (await handle.stat()).size;
      const capacity = bytes === undefined ? size : size + 1;
      const target = into !== undefined && into.length >= capacity ? into.subarray(0, capacity) : Buffer.allocUnsafe(capacity);
      let offset = 0;
      while (offset < capacity) {
        const requested = capacity - offset;
        const { bytesRead } = await handle.read(target, offset, requested, offset);
        offset += bytesRead;
        // A short read from the recorded size on is the end of the file.
        if (bytesRead === 0 || (offset >= size && bytesRead < requested)) break;
      }
      checkSize(offset, size, bytes !== undefined);
      const file = handle;
      handle = undefined;
      await file.close();
      return target.subarray(0, size);
    } catch (error) {
      if (handle) await this.closeAfterFailure(id, handle);
      throw readError(id, error);
    }
  }

  /** Starts the read thread, so that the first read does not wait for it. */
  startReading(): void {
    this.reader.start();
  }

  /** Stops the read thread; reads still on it fail. */
  close(): void {
    this.reader.close();
  }

  private async readOnThread(id: string, into: Buffer, bytes: number): Promise<Buffer> {
    const target = into.subarray(0, bytes + 1);
    try {
      checkSize(await this.reader.read(this.objectPath(id), target), bytes, true);
    } catch (error) {
      throw readError(id, error);
    }
    return target.subarray(0, bytes);
  }

  /** Opens an object file for streaming; the size comes from the open file, so it matches the bytes the stream yields. */
  async openStream(id: string): Promise<SpooledObjectStream> {
    let handle: FileHandle | undefined;
    try {
      handle = await open(this.objectPath(id), 'r');
      const { size } = await handle.stat();
      return { bytes: size, stream: handle.createReadStream({ autoClose: true }) };
    } catch (error) {
      if (handle) await this.closeAfterFailure(id, handle);
      throw new EndocapError(ErrorCodes.SPOOL_CORRUPT_ENTRY, `failed to read spooled object ${id}: ${errorMessage(error)}`, { cause: error });
    }
  }

  /**
   * Deletes the object file before its state file: a crash in between leaves a
   * state without object, which recovery removes, rather than an object that
   * would be sent again. With `syncFolder: false` the folder is not flushed, so
   * a power cut may bring both files back.
   */
  async remove(id: string, options: { syncFolder?: boolean } = {}): Promise<void> {
    let folders: string[];
    try {
      folders = await removeFilesDurably(this.directory, [id + OBJECT_SUFFIX, id + STATE_SUFFIX], options);
    } catch (error) {
      throw new EndocapError(ErrorCodes.SPOOL_WRITE_FAILED, `failed to remove object ${id}: ${errorMessage(error)}`, { cause: error, retryable: true });
    }
    // A folder under a spool file's name is nothing the spool wrote: it stays for an operator.
    for (const file of folders) this.log.warn({ objectId: id, file }, 'spool file is not a regular file, left in place');
  }

  private async closeAfterFailure(id: string, handle: FileHandle): Promise<void> {
    try {
      await handle.close();
    } catch (error) {
      this.log.error({ objectId: id, err: { message: errorMessage(error) } }, 'failed to close object file');
    }
  }

  private async discardFailedCreate(id: string, committed: boolean): Promise<void> {
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

  private objectPath(id: string): string {
    return path.join(this.directory, id + OBJECT_SUFFIX);
  }

  private statePath(id: string): string {
    return path.join(this.directory, id + STATE_SUFFIX);
  }
}

/** Throws when a read ended elsewhere than at `size`; `recorded` is true when the size came from the spool's record. */
function checkSize(bytesRead: number, size: number, recorded: boolean): void {
  if (bytesRead === size) return;
  const found = bytesRead > size ? `more than ${size}` : String(bytesRead);
  throw new Error(recorded ? `file has ${found} bytes, the spool recorded ${size}` : `file ended after ${bytesRead} of ${size} bytes`);
}

/**
 * Wraps the error of a failed read. It is permanent, because the file is
 * missing or not what the spool recorded, unless the read thread stopped.
 */
function readError(id: string, error: unknown): EndocapError {
  const retryable = (error as NodeJS.ErrnoException).code === READ_THREAD_STOPPED;
  return new EndocapError(ErrorCodes.SPOOL_CORRUPT_ENTRY, `failed to read spooled object ${id}: ${errorMessage(error)}`, { cause: error, retryable });
}

/** True for a write that failed because the filesystem or the user's quota is full. */
export function isOutOfSpace(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
