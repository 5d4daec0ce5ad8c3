import { execFile } from 'node:child_process';
import { constants, openSync, closeSync } from 'node:fs';
import { appendFile, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Worker } from 'node:worker_threads';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { FileReadThread, READ_THREAD_STOPPED } from '../../src/spool/file-read-thread.js';
import { Spool } from '../../src/spool/spool.js';
import { UID_ROOT, makeObject, plain } from './fixtures/objects.js';

async function tempFolder(t: { teardown: (fn: () => Promise<void> | void) => void }): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-read-thread-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

const run = promisify(execFile);

/** Makes a FIFO: opening it for reading blocks until a writer opens it, which holds a read thread in a blocking call. */
async function makeFifo(file: string): Promise<void> {
  await run('mkfifo', [file]);
}

/**
 * Lets a reader blocked on opening `fifo` go on, with an end of file: opens
 * the FIFO for writing without blocking, which works only once a reader
 * has it open, and closes it. Tries for up to 2 s.
 */
async function releaseFifo(fifo: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

function sharedBuffer(length: number, fill: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(length)).fill(fill);
}

t.test('read thread reads a file into shared memory', async (t) => {
  const directory = await tempFolder(t);
  const file = path.join(directory, 'object.dcm');
  const content = Buffer.from(Array.from({ length: 70_000 }, (_, index) => (index * 7) % 251));
  await writeFile(file, content);
  const reader = new FileReadThread();
  t.teardown(() => reader.close());

  // A view that starts inside a larger buffer: the bytes must land at the view, not at the buffer's start.
  const memory = sharedBuffer(100_000, 0xee);
  const view = memory.subarray(1000, 1000 + content.length + 1);
  t.equal(await reader.read(file, view), content.length, 'bytes read: the file is shorter than the view');
  t.ok(view.subarray(0, content.length).equals(content), 'the file at the start of the view');
  t.ok(memory.subarray(0, 1000).every((byte) => byte === 0xee), 'nothing before the view written');
  t.ok(memory.subarray(1000 + content.length).every((byte) => byte === 0xee), 'nothing after the file written');

  const short = sharedBuffer(1000, 0);
  t.equal(await reader.read(file, short), 1000, 'a view shorter than the file is filled');
  t.ok(short.equals(content.subarray(0, 1000)));
});

t.test('read thread batches one turn of reads', async (t) => {
  const directory = await tempFolder(t);
  const files = await Promise.all(
    [1, 2, 3].map(async (index) => {
      const file = path.join(directory, `object-${index}.dcm`);
      await writeFile(file, Buffer.alloc(1000 * index, index));
      return file;
    }),
  );
  const reader = new FileReadThread();
  t.teardown(() => reader.close());
  reader.start();
  const worker = (reader as unknown as { worker: Worker }).worker;
  let messages = 0;
  const post = worker.postMessage.bind(worker);
  worker.postMessage = (message: unknown) => {
    messages += 1;
    post(message);
  };

  const together = await Promise.all(files.map((file) => reader.read(file, sharedBuffer(5000, 0))));
  t.same(together, [1000, 2000, 3000], 'each read got its own file');
  t.equal(messages, 1, 'three reads asked for in one turn went in one message');

  for (const file of files) await reader.read(file, sharedBuffer(5000, 0));
  t.equal(messages, 4, 'reads asked for one after another go one by one');
});

t.test('blocked read holds back only later reads', async (t) => {
  const directory = await tempFolder(t);
  const first = path.join(directory, 'first.dcm');
  const last = path.join(directory, 'last.dcm');
  await writeFile(first, Buffer.alloc(100, 1));
  await writeFile(last, Buffer.alloc(300, 3));
  const fifo = path.join(directory, 'stalled.dcm');
  await makeFifo(fifo);
  const reader = new FileReadThread();
  t.teardown(() => reader.close());

  // One message with three reads; the FIFO's open blocks until a writer comes.
  const reads = [first, fifo, last].map((file) => reader.read(file, sharedBuffer(1000, 0)));
  const settled: string[] = [];
  reads.forEach((read, index) => void read.then(() => settled.push(['first', 'stalled', 'last'][index] as string)));
  t.equal(await reads[0], 100, 'the read before the blocked one came back');
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.same(settled, ['first'], 'the blocked read and the one after it wait');

  await releaseFifo(fifo);
  t.same(await Promise.all(reads), [100, 0, 300], 'the rest once the FIFO has a writer');
});

t.test('read thread reports the error of a file it cannot read', async (t) => {
  const directory = await tempFolder(t);
  const reader = new FileReadThread();
  t.teardown(() => reader.close());
  const missing = path.join(directory, 'missing.dcm');
  await t.rejects(reader.read(missing, sharedBuffer(10, 0)), { code: 'ENOENT', message: new RegExp(`ENOENT.*${missing}`) });
  await t.rejects(reader.read(directory, sharedBuffer(10, 0)), { code: 'EISDIR' }, 'a folder');
  await t.rejects(reader.read(missing, Buffer.alloc(10)), { message: 'file read thread needs a buffer in shared memory' });
});

t.test('event loop runs while the read thread waits for a file', async (t) => {
  const directory = await tempFolder(t);
  const fifo = path.join(directory, 'slow.dcm');
  await makeFifo(fifo);
  const reader = new FileReadThread();
  t.teardown(() => reader.close());

  // The read blocks until a writer opens the FIFO, and the writer comes only after a timer of this process fired.
  const events: string[] = [];
  const reading = reader.read(fifo, sharedBuffer(64, 0)).then((bytes) => {
    events.push('read');
    return bytes;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  events.push('timer');
  await writeFile(fifo, 'twelve bytes');
  t.equal(await reading, 12);
  t.same(events, ['timer', 'read'], 'the timer fired while the read was blocked');
});

/** Starts the thread and waits until a read of `fifo` blocks on it. */
async function blockedRead(reader: FileReadThread, directory: string, fifo: string): Promise<{ blocked: Promise<number> }> {
  const file = path.join(directory, 'ready.dcm');
  await writeFile(file, 'ready');
  await reader.read(file, sharedBuffer(8, 0));
  const blocked = reader.read(fifo, sharedBuffer(16, 0));
  await new Promise((resolve) => setTimeout(resolve, 50));
  // Wrapped, so that awaiting this function does not wait for the read.
  return { blocked };
}

t.test('reads of a thread that stopped fail as retryable, and the next read starts a new thread', async (t) => {
  const directory = await tempFolder(t);
  const fifo = path.join(directory, 'never.dcm');
  const file = path.join(directory, 'object.dcm');
  await writeFile(file, 'content');
  await makeFifo(fifo);
  const reader = new FileReadThread();
  t.teardown(() => reader.close());

  const { blocked } = await blockedRead(reader, directory, fifo);
  // Fault injection: the thread reports its end, as after a crash, while its read is still blocked.
  const stopped = (reader as unknown as { worker: Worker }).worker;
  t.teardown(async () => {
    await releaseFifo(fifo);
    await stopped.terminate();
  });
  stopped.emit('exit', 1);
  await t.rejects(blocked, { code: READ_THREAD_STOPPED, message: 'file read thread exited with code 1' });

  const into = sharedBuffer(16, 0);
  t.equal(await reader.read(file, into), 7, 'a new thread reads');
  t.equal(into.subarray(0, 7).toString(), 'content');
  t.not((reader as unknown as { worker: Worker }).worker, stopped, 'on a thread of its own');
});

t.test('read thread rejects reads once closed, without waiting for a blocked read', async (t) => {
  const directory = await tempFolder(t);
  const fifo = path.join(directory, 'never.dcm');
  await makeFifo(fifo);
  const reader = new FileReadThread();
  t.teardown(() => releaseFifo(fifo));

  const { blocked } = await blockedRead(reader, directory, fifo);
  const rejected = t.rejects(blocked, { code: READ_THREAD_STOPPED, message: 'file read thread closed' });
  reader.close();
  await rejected;
  await t.rejects(reader.read(fifo, sharedBuffer(16, 0)), { code: READ_THREAD_STOPPED, message: 'file read thread used after close' });
  t.throws(() => reader.start(), { message: 'file read thread used after close' });
});

/** Opens a spool in a new folder and adds one object; returns the object's file. */
async function spoolWithObject(t: { teardown: (fn: () => Promise<void> | void) => void }, uid: string) {
  const directory = await tempFolder(t);
  const spool = new Spool({ directory, destinations: plain('a'), log: createLogger('silent') });
  await spool.open();
  t.teardown(() => spool.close());
  const { part10, meta } = makeObject(uid);
  const entry = await spool.add(part10, meta);
  return { spool, part10, entry, file: path.join(directory, 'objects', `${entry.id}.dcm`) };
}

t.test('spool reads into shared memory on its read thread and checks the recorded size', async (t) => {
  const { spool, part10, entry, file } = await spoolWithObject(t, `${UID_ROOT}.60`);

  const memory = sharedBuffer(part10.length * 2, 0xee);
  const read = await spool.read(entry.id, memory);
  t.ok(read.equals(part10), 'the bytes of the object');
  t.equal(read.buffer, memory.buffer, 'read into the given shared memory');

  await appendFile(file, Buffer.from([0]));
  await t.rejects(spool.read(entry.id, memory), {
    code: 'SPOOL_CORRUPT_ENTRY',
    retryable: false,
    message: `failed to read spooled object ${entry.id}: file has more than ${part10.length} bytes, the spool recorded ${part10.length}`,
  });
  await truncate(file, part10.length - 10);
  await t.rejects(spool.read(entry.id, memory), { message: `failed to read spooled object ${entry.id}: file has ${part10.length - 10} bytes, the spool recorded ${part10.length}` });
  await rm(file);
  await t.rejects(spool.read(entry.id, memory), { code: 'SPOOL_CORRUPT_ENTRY', retryable: false, message: new RegExp(`^failed to read spooled object ${entry.id}: ENOENT`) });
});

t.test('spool read that its read thread dropped is retryable', async (t) => {
  const { spool, part10, entry, file } = await spoolWithObject(t, `${UID_ROOT}.61`);
  // The object file becomes a FIFO without writer, so that its read blocks.
  await rm(file);
  await makeFifo(file);

  const reading = spool.read(entry.id, sharedBuffer(part10.length * 2, 0));
  await new Promise((resolve) => setTimeout(resolve, 100));
  // Fault injection, as in the test above, through the spool's object files.
  const stopped = (spool as unknown as { files: { reader: { worker: Worker } } }).files.reader.worker;
  t.teardown(async () => {
    await releaseFifo(file);
    await stopped.terminate();
  });
  stopped.emit('exit', 1);
  await t.rejects(reading, { code: 'SPOOL_CORRUPT_ENTRY', retryable: true, message: `failed to read spooled object ${entry.id}: file read thread exited with code 1` });
});
