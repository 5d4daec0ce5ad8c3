import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { splitPart10 } from '../../src/pacs/part10.js';
import { Sender, type SenderEvents } from '../../src/pacs/sender.js';
import { storeObjects, type StoreObject } from '../../src/pacs/store-scu.js';
import type { DestinationConfig } from '../../src/profile/schema.js';
import { freePort } from '../helpers/ports.js';
import { destinationFor, makeJpegObject, makeUncompressedObject, memoryLogger, MemoryQueue, storeObjectFromFile } from './fixtures.js';
import { startFakeScp, startStorescp, type FakeBehaviour } from './peers.js';

const callingAeTitle = 'ENDOCAP';

let workDirectory = '';
let still: StoreObject;
let bigObject: StoreObject;

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-faults-'));
  const jpegPath = await makeJpegObject(workDirectory, 'still');
  still = await storeObjectFromFile('obj-still', jpegPath);
  // 5120 x 3456 RGB, uncompressed: a 53 MB data set, thousands of PDUs.
  const bigJpeg = await makeJpegObject(workDirectory, 'big', { width: 5120, height: 3456, noise: true });
  bigObject = await storeObjectFromFile('obj-big', await makeUncompressedObject(bigJpeg, join(workDirectory, 'big-explicit.dcm')));
});

t.teardown(() => rm(workDirectory, { recursive: true, force: true }));

type RecordedEvent = { [Name in keyof SenderEvents]: { name: Name; payload: SenderEvents[Name][0] } }[keyof SenderEvents];

function startSender(t: Test, destination: DestinationConfig, queue: MemoryQueue): { events: RecordedEvent[] } {
  const { log } = memoryLogger('info');
  const sender = new Sender({ destination, callingAeTitle, queue, log });
  const events: RecordedEvent[] = [];
  sender.on('objectStored', (payload) => events.push({ name: 'objectStored', payload }));
  sender.on('storeFailed', (payload) => events.push({ name: 'storeFailed', payload }));
  sender.on('objectSetAside', (payload) => events.push({ name: 'objectSetAside', payload }));
  sender.on('linkChanged', (payload) => events.push({ name: 'linkChanged', payload }));
  sender.start();
  t.teardown(() => sender.stop());
  return { events };
}

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function startFake(t: Test, behaviour: FakeBehaviour, port?: number) {
  const fake = await startFakeScp(behaviour, port);
  t.teardown(() => fake.stop());
  return fake;
}

t.test('sender retries a transient rejection', async (t) => {
  // DCMTK storescp's --refuse rejects with result 1 (permanent) only, so a fake
  // sends A-ASSOCIATE-RJ with result 2 (transient), source 3, reason 1 (congestion).
  const fake = await startFake(t, { kind: 'reject', result: 2, source: 3, reason: 1 });
  const destination = destinationFor(fake.port, { retry: { initialMs: 100, maxMs: 400, multiplier: 2 } });
  const queue = new MemoryQueue();
  queue.add(still, [destination.name]);
  const { events } = startSender(t, destination, queue);

  await waitUntil(() => fake.rejections >= 3, 'three rejected attempts');
  const failure = events.find((event) => event.name === 'storeFailed');
  t.same(failure?.payload, { id: 'obj-still', destination: destination.name, reason: 'association rejected (transient): temporary congestion', status: undefined, willRetry: true });
  t.notOk(events.some((event) => event.name === 'objectSetAside'), 'never set aside');
  t.match(queue.state('obj-still', destination.name), /^(queued|sending)$/, 'queued, or sending while a retry is under way');
});

t.test('abort in a 50 MB object, then complete delivery', async (t) => {
  t.ok(bigObject.part10.length > 50_000_000, `object of ${bigObject.part10.length} bytes`);
  const port = await freePort();
  // The fake reads about 10 MB of the data set, then sends A-ABORT and keeps the connection open.
  const fake = await startFake(t, { kind: 'abort-after-bytes', bytes: 10_000_000 }, port);
  const destination = destinationFor(port, { requestTimeoutMs: 60_000, retry: { initialMs: 300, maxMs: 1_000, multiplier: 2 } });
  const queue = new MemoryQueue();
  queue.add(bigObject, [destination.name]);
  const { events } = startSender(t, destination, queue);

  await waitUntil(() => events.some((event) => event.name === 'storeFailed'), 'the failed attempt');
  const failure = events.find((event) => event.name === 'storeFailed');
  t.same(failure?.payload, { id: 'obj-big', destination: destination.name, reason: `association aborted by 127.0.0.1:${port}`, status: undefined, willRetry: true });
  t.equal(fake.aborts, 1);
  t.ok(fake.bytesReceived < bigObject.part10.length, `the fake received ${fake.bytesReceived} bytes before aborting`);
  t.equal(fake.received, 0, 'no complete data set reached the fake');
  t.match(queue.state('obj-big', destination.name), /^(queued|sending)$/, 'queued, or sending while a retry is under way');

  // The PACS comes back as DCMTK storescp on the same port.
  await fake.stop();
  const directory = join(workDirectory, 'after-abort');
  await mkdir(directory);
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+B'] });
  t.teardown(() => peer.stop());
  await waitUntil(() => events.some((event) => event.name === 'objectStored'), 'delivery to storescp', 60_000);

  t.equal(queue.state('obj-big', destination.name), 'stored');
  const files = await readdir(directory);
  t.equal(files.length, 1, 'storescp received the object once');
  const stored = splitPart10(await readFile(join(directory, files[0] ?? '')));
  t.ok(stored.dataset.equals(splitPart10(bigObject.part10).dataset), 'the stored data set is byte-identical to the spooled one');
});

t.test('sender retries 0xA700 then stores', async (t) => {
  // No real peer runs out of resources on request, so a fake returns 0xA700, then success.
  const fake = await startFake(t, { kind: 'statuses', statuses: [0xa700, 0x0000] });
  const destination = destinationFor(fake.port, { retry: { initialMs: 100, maxMs: 400, multiplier: 2 } });
  const queue = new MemoryQueue();
  queue.add(still, [destination.name]);
  const { events } = startSender(t, destination, queue);

  await waitUntil(() => events.some((event) => event.name === 'objectStored'), 'objectStored');
  t.same(
    events.filter((event) => event.name === 'storeFailed' || event.name === 'objectStored').map((event) => event.payload),
    [
      { id: 'obj-still', destination: destination.name, reason: 'peer out of resources (status 0xA700)', status: 0xa700, willRetry: true },
      { id: 'obj-still', destination: destination.name, status: 0, warning: false },
    ],
  );
  t.equal(fake.received, 2, 'sent twice');
  t.equal(fake.associations, 2, 'the retry used a new association');
  t.equal(queue.state('obj-still', destination.name), 'stored');
});

t.test('failure and warning statuses', async (t) => {
  const cases: Array<{ status: number; outcome: string; reason: string }> = [
    { status: 0xa900, outcome: 'permanent', reason: 'peer rejected the object: data set does not match SOP class (status 0xA900)' },
    { status: 0xa9ff, outcome: 'permanent', reason: 'peer rejected the object: data set does not match SOP class (status 0xA9FF)' },
    { status: 0xc000, outcome: 'permanent', reason: 'peer rejected the object: cannot understand (status 0xC000)' },
    { status: 0xc123, outcome: 'permanent', reason: 'peer rejected the object: cannot understand (status 0xC123)' },
    { status: 0xb000, outcome: 'warning', reason: 'stored with warning 0xB000 (coercion of data elements)' },
    { status: 0xa7ff, outcome: 'transient', reason: 'peer out of resources (status 0xA7FF)' },
  ];
  for (const expected of cases) {
    const fake = await startFake(t, { kind: 'status', status: expected.status });
    const { log } = memoryLogger();
    const [result] = await storeObjects({ destination: destinationFor(fake.port), callingAeTitle, objects: [still], log });
    t.same(result, { id: 'obj-still', outcome: expected.outcome, status: expected.status, reason: expected.reason, associated: true }, `status 0x${expected.status.toString(16)}`);
  }
});

t.test('sender sets aside 0xA900 and keeps 0xB000', async (t) => {
  const mismatch = await startFake(t, { kind: 'status', status: 0xa900 });
  const rejected = destinationFor(mismatch.port, { name: 'mismatch' });
  const coercing = await startFake(t, { kind: 'status', status: 0xb000 });
  const warned = destinationFor(coercing.port, { name: 'coercing' });
  const queue = new MemoryQueue();
  queue.add(still, [rejected.name, warned.name]);
  const first = startSender(t, rejected, queue);
  const second = startSender(t, warned, queue);

  await waitUntil(() => first.events.some((event) => event.name === 'objectSetAside'), 'objectSetAside');
  await waitUntil(() => second.events.some((event) => event.name === 'objectStored'), 'objectStored');
  t.equal(queue.state('obj-still', rejected.name), 'set-aside');
  t.equal(mismatch.received, 1, 'a permanent failure is not retried');
  t.equal(queue.state('obj-still', warned.name), 'stored');
  t.same(second.events.find((event) => event.name === 'objectStored')?.payload, { id: 'obj-still', destination: warned.name, status: 0xb000, warning: true });
});
