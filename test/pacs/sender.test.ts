import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Sender, type SenderEvents } from '../../src/pacs/sender.js';
import type { StoreObject } from '../../src/pacs/store-scu.js';
import type { DestinationConfig } from '../../src/profile/schema.js';
import { destinationFor, makeJpegObject, makeUncompressedObject, memoryLogger, MemoryQueue, patientMarkers, storeObjectFromFile } from './fixtures.js';
import { freePort } from '../helpers/ports.js';
import { startFakeScp, startSilentServer, startStorescp } from './peers.js';

const callingAeTitle = 'ENDOCAP';

let workDirectory = '';
let objects: StoreObject[] = [];

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-sender-'));
  const path = await makeJpegObject(workDirectory, 'still');
  const template = await storeObjectFromFile('template', path);
  // Three objects with the same bytes: storescp names files by SOP instance, so each run gets its own folder.
  objects = ['obj-a', 'obj-b', 'obj-c'].map((id) => ({ ...template, id }));
});

t.teardown(() => rm(workDirectory, { recursive: true, force: true }));

/** Collects every event a sender emits, in order. */
function recordEvents(sender: Sender): Array<{ name: keyof SenderEvents; payload: SenderEvents[keyof SenderEvents][0] }> {
  const events: Array<{ name: keyof SenderEvents; payload: SenderEvents[keyof SenderEvents][0] }> = [];
  for (const name of ['objectStored', 'storeFailed', 'objectSetAside', 'linkChanged'] as const) {
    sender.on(name, (payload: SenderEvents[typeof name][0]) => events.push({ name, payload }));
  }
  return events;
}

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function startSender(t: Test, destination: DestinationConfig, queue: MemoryQueue, extra: { batchSize?: number; objectsPerAssociation?: number; stopGraceMs?: number } = {}) {
  const { log, lines } = memoryLogger();
  const sender = new Sender({ destination, callingAeTitle, queue, log, ...extra });
  const events = recordEvents(sender);
  sender.start();
  t.teardown(() => sender.stop());
  return { sender, events, lines };
}

/** Starts storescp with its own output folder and a sender to it with an empty queue. */
async function senderToStorescp(t: Test, folder: string, extra: { batchSize?: number; objectsPerAssociation?: number } = {}) {
  const directory = join(workDirectory, folder);
  await mkdir(directory);
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa', '+uf'] });
  t.teardown(() => peer.stop());
  const queue = new MemoryQueue();
  const destination = destinationFor(port);
  return { directory, queue, destination, ...startSender(t, destination, queue, extra) };
}

/** Queues objects, wakes the sender and waits until each was stored. */
async function deliver(setup: { sender: Sender; queue: MemoryQueue; destination: DestinationConfig; events: ReturnType<typeof recordEvents> }, queued: StoreObject[]): Promise<void> {
  // The sender starts idle, and wake() notifies it of the new objects.
  for (const object of queued) setup.queue.add(object, [setup.destination.name]);
  setup.sender.wake();
  const stored = () => setup.events.filter((event) => event.name === 'objectStored').length;
  await waitUntil(() => stored() === queued.length, `${queued.length} objectStored events`);
}

t.test('sender delivers queued objects in batches', async (t) => {
  const setup = await senderToStorescp(t, 'batches', { batchSize: 2 });
  const { directory, queue, destination, sender, events, lines } = setup;
  await deliver(setup, objects);

  t.same(
    events.filter((event) => event.name === 'objectStored').map((event) => event.payload),
    objects.map((object) => ({ id: object.id, destination: destination.name, status: 0, warning: false })),
  );
  t.same(objects.map((object) => queue.state(object.id, destination.name)), ['stored', 'stored', 'stored']);
  t.same(events.filter((event) => event.name === 'linkChanged').map((event) => event.payload), [{ destination: destination.name, up: true }]);
  t.equal((await readdir(directory)).length, 3, 'storescp wrote three files');
  // An association logs its end after its last object's event.
  await waitUntil(() => associationSizes(lines()).length >= 1, 'the association to end');
  t.same(associationSizes(lines()), [3], 'one association took both batches while the queue had objects');
  t.same(sender.status(), { destination: destination.name, lastResult: 'stored', consecutiveFailures: 0 });
  for (const marker of patientMarkers) t.notOk(lines().includes(marker), `log contains no ${marker}`);
});

/** Objects sent per association, from the store-scu log lines, in order. */
function associationSizes(log: string): number[] {
  return [...log.matchAll(/"objects":(\d+)[^\n]*"msg":"store batch finished"/g)].map((match) => Number(match[1]));
}

t.test('sender ends an association at its object limit', async (t) => {
  const setup = await senderToStorescp(t, 'limit', { batchSize: 1, objectsPerAssociation: 2 });
  await deliver(setup, objects);
  const { directory, lines } = setup;
  await waitUntil(() => associationSizes(lines()).length >= 2, 'both associations to end');
  t.same(associationSizes(lines()), [2, 1], 'two objects, then a new association for the third');
  t.equal((await readdir(directory)).length, 3, 'storescp wrote three files');
});

t.test('sender opens a new association for an object the open one cannot carry', async (t) => {
  const setup = await senderToStorescp(t, 'contexts', { batchSize: 1 });
  const { events, lines } = setup;
  const [first, , third] = objects as [StoreObject, StoreObject, StoreObject];
  const uncompressedPath = await makeUncompressedObject(join(workDirectory, 'still.dcm'), join(workDirectory, 'contexts-explicit.dcm'));
  const uncompressed = await storeObjectFromFile('obj-explicit', uncompressedPath);
  // The first association proposes JPEG Baseline only, so it cannot carry the
  // Explicit VR object; the second proposes uncompressed syntaxes only.
  await deliver(setup, [first, uncompressed, third]);
  t.same(
    events.filter((event) => event.name === 'objectStored').map((event) => (event.payload as { id: string }).id),
    ['obj-a', 'obj-explicit', 'obj-c'],
    'stored oldest first',
  );
  await waitUntil(() => associationSizes(lines()).length >= 3, 'three associations to end');
  t.same(associationSizes(lines()), [1, 1, 1], 'one association per run of objects it can carry');
  t.notOk(lines().includes('no acceptable presentation context'), 'no object was offered to an association without its context');
});

t.test('sender ends an association after a transient failure', async (t) => {
  const setup = await senderToStorescp(t, 'transient-read', { batchSize: 1 });
  const { queue, events, lines } = setup;
  const readObject = queue.read.bind(queue);
  let busyReads = 0;
  queue.read = async (id: string) => {
    if (id !== 'obj-b') return readObject(id);
    busyReads += 1;
    throw Object.assign(new Error('EBUSY: resource busy'), { code: 'EBUSY' });
  };
  for (const object of objects) queue.add(object, [setup.destination.name]);
  setup.sender.wake();
  await waitUntil(() => associationSizes(lines()).length >= 1, 'the first association to end');

  // One more object may have been taken before the failure was known, as the next file is read ahead.
  const [firstSize = 0] = associationSizes(lines());
  t.ok(firstSize <= objects.length, `the first association ended after ${firstSize} objects`);
  t.equal(busyReads, 1, 'the failed object was not taken again on the same association');
  t.same(
    events.filter((event) => event.name === 'storeFailed').map((event) => (event.payload as { id: string; willRetry: boolean }).willRetry),
    [true],
    'one transient failure, to be retried',
  );
});

t.test('sender sends past objects the peer refuses', async (t) => {
  const directory = join(workDirectory, 'refused');
  await mkdir(directory);
  const port = await freePort();
  // Without +xa storescp accepts uncompressed transfer syntaxes only, so the JPEG objects are refused.
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory });
  t.teardown(() => peer.stop());
  const queue = new MemoryQueue();
  const destination = destinationFor(port, { retry: { initialMs: 50, maxMs: 60_000, multiplier: 2 } });
  const { sender, events } = startSender(t, destination, queue, { batchSize: 2 });
  const uncompressed = await storeObjectFromFile('obj-explicit', await makeUncompressedObject(join(workDirectory, 'still.dcm'), join(workDirectory, 'refused-explicit.dcm')));

  // More refused objects than a batch holds, queued before the one the peer accepts.
  for (const object of [...objects, uncompressed]) queue.add(object, [destination.name]);
  sender.wake();
  await waitUntil(() => events.some((event) => event.name === 'objectStored'), 'the uncompressed object to be stored', 10_000);

  t.same(
    events.filter((event) => event.name === 'objectStored').map((event) => (event.payload as { id: string }).id),
    ['obj-explicit'],
  );
  // With nothing else queued the refused objects are offered again after the backoff; between attempts they are queued.
  await t.resolves(
    waitUntil(() => objects.every((object) => queue.state(object.id, destination.name) === 'queued'), 'the refused objects to be queued between attempts', 10_000),
    'the refused objects stay queued for their retry',
  );
  t.notOk(queue.calls.some((call) => call.kind === 'set-aside'), 'nothing set aside');
});

t.test('sender retries until storescp starts', async (t) => {
  const directory = join(workDirectory, 'late-start');
  await mkdir(directory);
  const port = await freePort();
  const queue = new MemoryQueue();
  const destination = destinationFor(port, { retry: { initialMs: 100, maxMs: 10_000, multiplier: 2 } });
  queue.add(objects[0] as StoreObject, [destination.name]);
  const { sender, events, lines } = startSender(t, destination, queue);

  await waitUntil(() => events.filter((event) => event.name === 'storeFailed').length >= 4, 'four failed attempts');
  const failures = events.filter((event) => event.name === 'storeFailed').map((event) => event.payload);
  t.same(failures[0], { id: 'obj-a', destination: destination.name, reason: `connection refused by 127.0.0.1:${port}`, status: undefined, willRetry: true });
  t.match(queue.state('obj-a', destination.name), /^(queued|sending)$/, 'the object stays queued, or sending while a retry is under way');
  t.same(events.find((event) => event.name === 'linkChanged')?.payload, { destination: destination.name, up: false, reason: `connection refused by 127.0.0.1:${port}` });
  const status = sender.status();
  t.equal(status.lastResult, 'transient');
  t.equal(status.lastError, `connection refused by 127.0.0.1:${port}`);
  t.ok(status.consecutiveFailures >= 4, 'failures are counted');

  // With full jitter over half the delay, each delay lies in [base/2, base] and
  // the base doubles, so a delay always exceeds the one two attempts earlier.
  const delays = lines()
    .split('\n')
    .filter((line) => line.includes('"msg":"retry scheduled"'))
    .map((line) => (JSON.parse(line) as { delayMs: number }).delayMs);
  t.ok(delays.length >= 4, 'a retry was scheduled after each failure');
  for (let index = 2; index < delays.length; index += 1) {
    t.ok((delays[index] ?? 0) > (delays[index - 2] ?? 0), `delay ${index} grows: ${delays.join(', ')}`);
  }

  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa'] });
  t.teardown(() => peer.stop());
  await waitUntil(() => events.some((event) => event.name === 'objectStored'), 'objectStored after the peer started');
  t.equal(queue.state('obj-a', destination.name), 'stored');
  t.same(events.filter((event) => event.name === 'linkChanged').at(-1)?.payload, { destination: destination.name, up: true });
  // The sender resets its backoff once the batch ended, which may come after the event.
  await waitUntil(() => sender.status().consecutiveFailures === 0, 'the backoff to be reset');
  t.equal(sender.status().consecutiveFailures, 0, 'backoff reset after the success');
  t.equal(sender.status().nextAttemptAt, undefined);
});

t.test('sender sets aside permanent failures', async (t) => {
  // A dcmjs-dimse Scp fake returns 0xC000, because no real peer returns it on request.
  const fake = await startFakeScp({ kind: 'status', status: 0xc000 });
  t.teardown(() => fake.stop());
  const queue = new MemoryQueue();
  const destination = destinationFor(fake.port);
  queue.add(objects[0] as StoreObject, [destination.name]);
  const { sender, events } = startSender(t, destination, queue);

  await waitUntil(() => events.some((event) => event.name === 'objectSetAside'), 'objectSetAside');
  const reason = 'peer rejected the object: cannot understand (status 0xC000)';
  t.same(events.find((event) => event.name === 'storeFailed')?.payload, { id: 'obj-a', destination: destination.name, reason, status: 0xc000, willRetry: false });
  t.same(events.find((event) => event.name === 'objectSetAside')?.payload, { id: 'obj-a', destination: destination.name, reason, status: 0xc000 });
  t.equal(queue.state('obj-a', destination.name), 'set-aside');
  t.same(sender.status(), { destination: destination.name, lastResult: 'permanent', lastError: reason, consecutiveFailures: 0 });
  t.equal(fake.received, 1, 'sent once, never retried');
});

t.test('sender retries out of resources', async (t) => {
  // A dcmjs-dimse Scp fake returns 0xA700, because no real peer returns it on request.
  const fake = await startFakeScp({ kind: 'status', status: 0xa700 });
  t.teardown(() => fake.stop());
  const queue = new MemoryQueue();
  const destination = destinationFor(fake.port, { retry: { initialMs: 200, maxMs: 1_000, multiplier: 2 } });
  queue.add(objects[0] as StoreObject, [destination.name]);
  const { sender, events } = startSender(t, destination, queue);

  await waitUntil(() => fake.received >= 2, 'a second attempt');
  // While an attempt runs the object is 'sending'. The third attempt starts only after a backoff of at least 200 ms.
  await waitUntil(() => events.filter((event) => event.name === 'storeFailed').length >= 2, 'the second failure recorded');
  t.same(events.find((event) => event.name === 'storeFailed')?.payload, {
    id: 'obj-a',
    destination: destination.name,
    reason: 'peer out of resources (status 0xA700)',
    status: 0xa700,
    willRetry: true,
  });
  t.notOk(events.some((event) => event.name === 'objectSetAside'));
  t.match(queue.state('obj-a', destination.name), /^(queued|sending)$/, 'queued, or sending while a retry is under way');
  t.same(events.filter((event) => event.name === 'linkChanged').map((event) => event.payload), [{ destination: destination.name, up: true }], 'the link stays up');
  t.ok(sender.status().consecutiveFailures >= 1);
});

t.test('unsent objects count no attempt', async (t) => {
  // The second C-STORE gets 0xA700 (a fake again). It is the last object of a
  // batch of two, so the third object was taken for the same association
  // while the second was in flight, and never went out.
  const fake = await startFakeScp({ kind: 'statuses', statuses: [0x0000, 0xa700, 0x0000] });
  t.teardown(() => fake.stop());
  const queue = new MemoryQueue();
  const destination = destinationFor(fake.port, { retry: { initialMs: 100, maxMs: 400, multiplier: 2 } });
  for (const object of objects) queue.add(object, [destination.name]);
  const { events } = startSender(t, destination, queue, { batchSize: 2 });

  await waitUntil(() => events.filter((event) => event.name === 'objectStored').length === 3, 'three objectStored events');
  const callsFor = (id: string) => queue.calls.filter((call) => call.id === id).map((call) => call.kind);
  t.same(callsFor('obj-b'), ['failed', 'stored'], 'the object that got 0xA700 counts a failed attempt');
  t.same(callsFor('obj-c'), ['unsent', 'stored'], 'the object taken behind it went back unsent');
  t.same(
    events.filter((event) => event.name === 'storeFailed').map((event) => (event.payload as { id: string }).id),
    ['obj-b'],
    'no failure is reported for the unsent object',
  );
  t.equal(queue.entries.get('obj-c')?.entry.deliveries[destination.name]?.attempts, 1, 'one attempt: the one that stored it');
  t.equal(fake.received, 4, 'obj-a once, obj-b twice, obj-c once');
});

t.test('sender stop aborts a stalled association', async (t) => {
  // A fake peer accepts the association and never responds to the C-STORE.
  const fake = await startFakeScp({ kind: 'never-answer' });
  t.teardown(() => fake.stop());
  const queue = new MemoryQueue();
  const destination = destinationFor(fake.port, { requestTimeoutMs: 60_000 });
  queue.add(objects[0] as StoreObject, [destination.name]);
  const { sender, events } = startSender(t, destination, queue, { stopGraceMs: 200 });

  await waitUntil(() => fake.received === 1, 'the request to arrive');
  t.equal(queue.state('obj-a', destination.name), 'sending', 'marked sending while the association runs');
  await sender.stop();

  t.same(events.find((event) => event.name === 'storeFailed')?.payload, {
    id: 'obj-a',
    destination: destination.name,
    reason: 'association aborted: sender stopping',
    status: undefined,
    willRetry: true,
  });
  t.equal(queue.state('obj-a', destination.name), 'queued', 'the object stays queued for the next start');
});

t.test('unsent batch still backs off', async (t) => {
  // A fake aborts each association as soon as it accepted it. Reads take
  // 200 ms, as from a slow disk, so the abort always comes before the first
  // object could go out.
  const fake = await startFakeScp({ kind: 'abort-after-accept' });
  t.teardown(() => fake.stop());
  const queue = new MemoryQueue();
  const readObject = queue.read.bind(queue);
  queue.read = async (id: string) => {
    await new Promise((resolve) => setTimeout(resolve, 200));
    return readObject(id);
  };
  const destination = destinationFor(fake.port, { retry: { initialMs: 200, maxMs: 60_000, multiplier: 2 } });
  for (const object of objects) queue.add(object, [destination.name]);
  const { sender, events } = startSender(t, destination, queue);

  await new Promise((resolve) => setTimeout(resolve, 1_000));
  await sender.stop();
  // Backoff waits of about 200, 400 and 800 ms (jitter included) leave room for four associations in a second.
  t.ok(fake.associations >= 1 && fake.associations <= 5, `${fake.associations} associations in one second`);
  t.equal(fake.received, 0, 'no object arrived');
  t.notOk(events.some((event) => event.name === 'storeFailed'), 'no failure reported for objects never sent');
  for (const object of objects) t.equal(queue.entries.get(object.id)?.entry.deliveries[destination.name]?.attempts, 0, `${object.id}: no attempt counted`);
});

t.test('stop during negotiation counts no attempt', async (t) => {
  // A server that takes the connection and never responds to the A-ASSOCIATE-RQ.
  const silent = await startSilentServer();
  t.teardown(() => silent.stop());
  const queue = new MemoryQueue();
  const destination = destinationFor(silent.port, { associationTimeoutMs: 60_000 });
  for (const object of objects) queue.add(object, [destination.name]);
  const { sender, events } = startSender(t, destination, queue, { stopGraceMs: 200 });

  await waitUntil(() => queue.state('obj-a', destination.name) === 'sending', 'the batch to be taken');
  await sender.stop();
  t.same(
    queue.calls.map((call) => call.kind),
    ['unsent', 'unsent', 'unsent'],
    'every object went back unsent',
  );
  t.notOk(events.some((event) => event.name === 'storeFailed'), 'no failure reported');
  t.same(objects.map((object) => queue.state(object.id, destination.name)), ['queued', 'queued', 'queued']);
});

t.test('sender stop while idle returns', async (t) => {
  const queue = new MemoryQueue();
  const { sender } = startSender(t, destinationFor(await freePort()), queue);
  await sender.stop();
  t.pass('stop resolved');
});

/**
 * Queue whose stored results wait, like the spool's journal, for a flush or
 * others to share it. A flush covers the results already being recorded.
 */
class GroupedQueue extends MemoryQueue {
  flushes = 0;
  private readonly waiting: Array<() => void> = [];

  override async markStored(id: string, destination: string, status: number): Promise<void> {
    const flushed = new Promise<void>((resolve) => this.waiting.push(resolve));
    await super.markStored(id, destination, status);
    await flushed;
  }

  flushResults(): void {
    this.flushes += 1;
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

t.test('sender flushes results when the association ends', async (t) => {
  const directory = join(workDirectory, 'flush');
  await mkdir(directory);
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa'] });
  t.teardown(() => peer.stop());
  const queue = new GroupedQueue();
  const destination = destinationFor(port);
  const setup = { queue, destination, ...startSender(t, destination, queue) };

  // Without the flush, no result would be recorded and no event emitted.
  await deliver(setup, objects);
  t.equal(queue.flushes, 1, 'one flush for the one association');
  t.same(
    queue.calls.map((call) => call.kind),
    ['stored', 'stored', 'stored'],
  );
});
