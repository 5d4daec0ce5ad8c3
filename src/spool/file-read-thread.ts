import { Worker } from 'node:worker_threads';

/** A read asked of the thread: the file, and the shared memory to read it into. */
interface ReadRequest {
  sequence: number;
  file: string;
  memory: SharedArrayBuffer;
  offset: number;
  length: number;
}

/** The thread's reply: bytes read, or the error of the open, read or close that failed. */
type ReadReply = { sequence: number; bytesRead: number } | { sequence: number; error: { message: string; code?: string } };

interface WaitingRead {
  resolve: (bytesRead: number) => void;
  reject: (error: Error) => void;
}

/**
 * Program of the reading thread, as JavaScript text. Each message is a list
 * of reads, done in order, and each read gets its ReadReply as soon as it
 * ends, so a read that blocks holds back only the reads after it. It is text
 * and not a function of this module turned into text, because a TypeScript
 * loader may add calls to its own helpers, which an `eval` worker lacks.
 */
const READ_THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');

function readOne(request) {
  let descriptor;
  try {
    descriptor = fs.openSync(request.file, 'r');
    const target = new Uint8Array(request.memory, request.offset, request.length);
    let bytesRead = 0;
    while (bytesRead < request.length) {
      // From the current position: the file was just opened, and a FIFO cannot seek.
      const read = fs.readSync(descriptor, target, bytesRead, request.length - bytesRead, null);
      if (read === 0) break;
      bytesRead += read;
    }
    const open = descriptor;
    descriptor = undefined;
    fs.closeSync(open);
    return { sequence: request.sequence, bytesRead };
  } catch (error) {
    if (descriptor !== undefined) {
      try {
        fs.closeSync(descriptor);
      } catch {
        // The read already failed; its error is the one to report.
      }
    }
    return { sequence: request.sequence, error: { message: String(error.message ?? error), code: error.code } };
  }
}

parentPort.on('message', (requests) => {
  for (const request of requests) parentPort.postMessage(readOne(request));
});
`;

/** Error code of reads that failed because the thread stopped or closed, not because of the file. */
export const READ_THREAD_STOPPED = 'EREADTHREAD';

/** Creates the error of a read cut off by the thread, not by the file: the same read may work later. */
function stoppedError(message: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(message);
  error.code = READ_THREAD_STOPPED;
  return error;
}

/** True when a buffer's memory can be filled by another thread. */
export function isShared(buffer: Buffer): boolean {
  return buffer.buffer instanceof SharedArrayBuffer;
}

/**
 * Reads whole files into shared memory on a thread of its own, with blocking
 * calls: open, read and close are one trip there and back instead of three
 * trips through libuv's thread pool, which on a small box costs the main
 * thread more than the read itself. The event loop does not wait for these
 * reads: while a read blocks, only this thread waits. Other reads of the spool, for
 * every destination, queue behind it, where the thread pool would have run
 * them beside it; they share the disk that stalled.
 *
 * The thread starts with `start()` or at the first read, and keeps the
 * process alive only while a read is in progress. Starting one costs tens of milliseconds of CPU time, so
 * a spool starts it when it opens.
 * When it stops unexpectedly, the reads it had fail with a retryable error and
 * the next read starts a new thread.
 */
export class FileReadThread {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, WaitingRead>();
  /** Reads requested in this turn of the event loop, posted together at its end. */
  private outgoing: ReadRequest[] = [];
  private sequence = 0;
  private closed = false;

  /**
   * Reads up to `into.length` bytes from the start of `file` into `into`,
   * whose memory must be shared (`isShared`), and resolves to the number of
   * bytes read: fewer when the file is shorter. Until then the thread may
   * write into `into`; a caller that gives up on a read must not reuse it.
   * Reads requested together, before the caller next waits, go to the
   * thread in one message: a trip between threads costs more CPU time than
   * reading a still from the page cache.
   */
  read(file: string, into: Buffer): Promise<number> {
    if (this.closed) return Promise.reject(stoppedError('file read thread used after close'));
    if (!isShared(into)) return Promise.reject(new Error('file read thread needs a buffer in shared memory'));
    const worker = this.running();
    this.sequence += 1;
    const request: ReadRequest = { sequence: this.sequence, file, memory: into.buffer as SharedArrayBuffer, offset: into.byteOffset, length: into.length };
    return new Promise((resolve, reject) => {
      // Like a read on libuv's thread pool, a read in progress keeps the process alive.
      if (this.waiting.size === 0) worker.ref();
      this.waiting.set(request.sequence, { resolve, reject });
      this.outgoing.push(request);
      if (this.outgoing.length === 1) queueMicrotask(() => this.post(worker));
    });
  }

  /** Posts the reads requested so far to `worker`, unless it stopped meanwhile: their promises were rejected then. */
  private post(worker: Worker): void {
    const requests = this.outgoing;
    this.outgoing = [];
    if (this.worker === worker) worker.postMessage(requests);
  }

  /**
   * Stops the thread; reads still waiting fail. Does not wait for the thread
   * to end: one blocked on a stalled disk ends only when its call returns.
   */
  close(): void {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    this.failWaiting(stoppedError('file read thread closed'));
    if (worker === undefined) return;
    worker.unref();
    worker.terminate().catch(() => undefined);
  }

  /** Starts the thread unless it runs. */
  start(): void {
    if (this.closed) throw new Error('file read thread used after close');
    this.running();
  }

  private running(): Worker {
    if (this.worker !== undefined) return this.worker;
    // No inherited execArgv: a loader given to the main process (a test
    // runner's TypeScript loader) is of no use to this plain JavaScript.
    const worker = new Worker(READ_THREAD_SOURCE, { eval: true, execArgv: [] });
    worker.on('message', (reply: ReadReply) => this.settle(reply));
    worker.on('error', (error) => this.stopped(worker, `failed: ${error.message}`));
    worker.on('exit', (code) => this.stopped(worker, `exited with code ${code}`));
    // After the listeners, as adding a 'message' listener refs the worker again.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private settle(reply: ReadReply): void {
    const read = this.waiting.get(reply.sequence);
    if (read === undefined) return;
    this.waiting.delete(reply.sequence);
    if (this.waiting.size === 0) this.worker?.unref();
    if ('bytesRead' in reply) {
      read.resolve(reply.bytesRead);
      return;
    }
    const error: NodeJS.ErrnoException = new Error(reply.error.message);
    if (reply.error.code !== undefined) error.code = reply.error.code;
    read.reject(error);
  }

  private stopped(worker: Worker, ending: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    worker.unref();
    this.failWaiting(stoppedError(`file read thread ${ending}`));
  }

  private failWaiting(error: Error): void {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const read of waiting) read.reject(error);
  }
}
