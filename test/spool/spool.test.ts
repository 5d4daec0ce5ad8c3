import { appendFile, mkdtemp, readdir, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { Spool } from '../../src/spool/spool.js';
import { createLogger } from '../../src/log.js';
import type { SpoolEntry } from '../../src/spool/types.js';
import { UID_ROOT, makeObject, memoryLogger, plain, whenRemoved } from './fixtures/objects.js';
import { readState } from './fixtures/state.js';

async function tempSpool(t: { teardown: (fn: () => Promise<void>) => void }, destinations = ['a', 'b']) {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-spool-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const spool = new Spool({ directory, destinations: plain(...destinations), log: createLogger('silent') });
  await spool.open();
  return { directory, objects: path.join(directory, 'objects'), spool };
}


t.test('spool lifecycle with two destinations', async (t) => {
  const { directory, objects, spool } = await tempSpool(t);
  const { part10, meta } = makeObject(`${UID_ROOT}.1`);
  const removed: string[] = [];
  spool.on('objectRemoved', ({ id }) => removed.push(id));

  const entry = await spool.add(part10, meta);
  t.equal(entry.bytes, part10.length);
  t.equal(entry.sopInstanceUid, meta.sopInstanceUid);
  t.same(Object.keys(entry.deliveries).sort(), ['a', 'b']);
  t.same((await readdir(objects)).sort(), [`${entry.id}.dcm`, `${entry.id}.json`]);
  t.same(await readState(directory, entry.id), entry, 'state file is the entry');
  t.ok((await spool.read(entry.id)).equals(part10), 'read returns the bytes added');
  t.same(spool.pending('a').map((e) => e.id), [entry.id]);
  t.same(spool.pending('b').map((e) => e.id), [entry.id]);

  await spool.markStored(entry.id, 'a', 0);
  t.same(spool.pending('a'), [], 'no longer pending for a');
  t.same(spool.pending('b').map((e) => e.id), [entry.id], 'still pending for b');
  const state = await readState(directory, entry.id);
  t.equal(state.deliveries.a?.state, 'stored');
  t.equal(state.deliveries.a?.lastStatus, 0);
  t.equal(state.deliveries.a?.attempts, 1);
  t.equal(state.deliveries.b?.state, 'queued');

  await spool.sweep();
  t.same((await readdir(objects)).sort(), [`${entry.id}.dcm`, `${entry.id}.json`], 'kept while b waits');

  await spool.markStored(entry.id, 'b', 0);
  await whenRemoved(spool, [entry.id]);
  t.same(await readdir(objects), [], 'object and state removed once both stored');
  t.same(spool.list(), []);
  t.same(removed, [entry.id]);
  await t.rejects(spool.read(entry.id), { code: 'SPOOL_UNKNOWN_OBJECT' });
  await t.rejects(spool.markStored(entry.id, 'a', 0), { code: 'SPOOL_UNKNOWN_OBJECT' });
});

t.test('delivered objects wait for a pause', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-spool-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const objects = path.join(directory, 'objects');
  // No pause comes within the test, so only close() can remove the objects.
  const spool = new Spool({ directory, destinations: plain('a'), log: createLogger('silent'), removalQuietMs: 60_000 });
  await spool.open();
  const removed: string[] = [];
  spool.on('objectRemoved', ({ id, cause }) => removed.push(`${id} ${cause}`));
  const entries: SpoolEntry[] = [];
  for (let index = 0; index < 3; index += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.6.${index}`);
    entries.push(await spool.add(part10, meta));
  }

  for (const entry of entries) await spool.markStored(entry.id, 'a', 0);
  t.equal(spool.list().length, 3, 'delivered objects still listed');
  t.equal(spool.stats().retained, 3, 'and counted as retained');
  t.equal((await readdir(objects)).length, 6, 'their files are still there');

  await spool.close();
  t.same(removed, entries.map((entry) => `${entry.id} delivered`), 'close removed them, oldest first');
  t.same(await readdir(objects), [], 'no files left');
});

t.test('spool reads an object into a given buffer when it fits', async (t) => {
  const { spool } = await tempSpool(t);
  const { part10, meta } = makeObject(`${UID_ROOT}.50`);
  const entry = await spool.add(part10, meta);

  const roomy = Buffer.alloc(part10.length + 100, 0xee);
  const into = await spool.read(entry.id, roomy);
  t.ok(into.equals(part10), 'the bytes of the object');
  t.equal(into.buffer, roomy.buffer, 'read into the given buffer');
  t.equal(into.byteOffset, roomy.byteOffset);

  // The spool requests one byte more than it recorded, to notice a file that grew.
  const small = Buffer.alloc(part10.length, 0xee);
  const fresh = await spool.read(entry.id, small);
  t.ok(fresh.equals(part10), 'the bytes of the object');
  t.not(fresh.buffer, small.buffer, 'a buffer too small is left alone');
  t.ok(small.every((byte) => byte === 0xee), 'and not written to');
});

t.test('spool read rejects a file whose size changed', async (t) => {
  const { objects, spool } = await tempSpool(t);
  const { part10, meta } = makeObject(`${UID_ROOT}.51`);
  const entry = await spool.add(part10, meta);
  const file = path.join(objects, `${entry.id}.dcm`);

  await appendFile(file, Buffer.from([0]));
  await t.rejects(spool.read(entry.id), { code: 'SPOOL_CORRUPT_ENTRY', message: `failed to read spooled object ${entry.id}: file has more than ${part10.length} bytes, the spool recorded ${part10.length}` });
  await t.rejects(spool.read(entry.id, Buffer.alloc(part10.length * 2)), { code: 'SPOOL_CORRUPT_ENTRY' }, 'also when reading into a buffer');

  await truncate(file, part10.length - 10);
  await t.rejects(spool.read(entry.id), { message: `failed to read spooled object ${entry.id}: file has ${part10.length - 10} bytes, the spool recorded ${part10.length}` });
});

t.test('spool failure keeps object queued', async (t) => {
  const { directory, spool } = await tempSpool(t);
  const { part10, meta } = makeObject(`${UID_ROOT}.2`);
  const entry = await spool.add(part10, meta);
  await spool.markFailed(entry.id, 'a', 'connection refused');
  await spool.markFailed(entry.id, 'a', 'association rejected', 0xa700);
  const record = (await readState(directory, entry.id)).deliveries.a;
  t.same(record && { state: record.state, attempts: record.attempts, lastError: record.lastError, lastStatus: record.lastStatus }, {
    state: 'queued',
    attempts: 2,
    lastError: 'association rejected',
    lastStatus: 0xa700,
  });
  t.same(spool.pending('a').map((e) => e.id), [entry.id]);
});

t.test('spool keeps set-aside objects', async (t) => {
  const { directory, objects, spool } = await tempSpool(t);
  const { part10, meta } = makeObject(`${UID_ROOT}.3`);
  const entry = await spool.add(part10, meta);
  const setAside: string[] = [];
  spool.on('objectSetAside', ({ id, destination }) => setAside.push(`${id}/${destination}`));

  await spool.markSetAside(entry.id, 'a', 'SOP class not supported', 0x0122);
  await spool.markStored(entry.id, 'b', 0);
  t.same(setAside, [`${entry.id}/a`]);
  t.same(spool.pending('a'), []);
  t.same(spool.pending('b'), []);
  await spool.sweep();
  t.same((await readdir(objects)).sort(), [`${entry.id}.dcm`, `${entry.id}.json`], 'object kept');
  t.same(spool.stats().destinations.a, { queued: 0, sending: 0, setAside: 1, awaitingCommitment: 0, bytesQueued: 0, oldestQueuedAt: null });

  await spool.close();
  const reopened = new Spool({ directory, destinations: plain('a', 'b'), log: createLogger('silent') });
  const report = await reopened.open();
  t.equal(report.objects, 1, 'kept across restarts');
  t.equal(reopened.get(entry.id)?.deliveries.a?.state, 'set-aside');

  await reopened.requeue(entry.id, 'a');
  t.same(reopened.pending('a').map((e) => e.id), [entry.id], 'queued again by operator');
  await reopened.markStored(entry.id, 'a', 0);
  await whenRemoved(reopened, [entry.id]);
  t.same(await readdir(objects), [], 'removed once stored after requeue');
});

t.test('spool discard removes a set-aside object', async (t) => {
  const { objects, spool } = await tempSpool(t);
  const { part10, meta } = makeObject(`${UID_ROOT}.4`);
  const entry = await spool.add(part10, meta);
  await spool.markSetAside(entry.id, 'a', 'rejected');
  await spool.discard(entry.id);
  t.same(await readdir(objects), []);
  t.same(spool.list(), []);
});

t.test('spool serialises concurrent marks on one object', async (t) => {
  const { directory, objects, spool } = await tempSpool(t);
  const entries: SpoolEntry[] = [];
  for (let i = 0; i < 20; i += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.5.${i}`);
    entries.push(await spool.add(part10, meta));
  }

  // Two senders record different outcomes on the same objects at the same time.
  await Promise.all(entries.flatMap((entry) => [spool.markFailed(entry.id, 'a', 'timeout'), spool.markSetAside(entry.id, 'b', 'rejected', 0xc000)]));
  for (const entry of entries) {
    const state = await readState(directory, entry.id);
    t.equal(state.deliveries.a?.state, 'queued', `${entry.id} a kept`);
    t.equal(state.deliveries.b?.state, 'set-aside', `${entry.id} b kept`);
  }

  await Promise.all(entries.flatMap((entry) => [spool.requeue(entry.id, 'b')]));
  await Promise.all(entries.flatMap((entry) => [spool.markStored(entry.id, 'a', 0), spool.markStored(entry.id, 'b', 0)]));
  await whenRemoved(spool, entries.map((entry) => entry.id));
  t.same(await readdir(objects), [], 'every object removed after both stores');
  t.same(spool.list(), []);
});

t.test('spool pending and stats order oldest first', async (t) => {
  const { spool } = await tempSpool(t);
  const ids: string[] = [];
  let bytes = 0;
  for (let i = 0; i < 5; i += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.6.${i}`);
    const entry = await spool.add(part10, meta);
    ids.push(entry.id);
    bytes += entry.bytes;
  }
  t.same(ids, [...ids].sort(), 'ids sort in the order added');
  t.same(spool.pending('a').map((e) => e.id), ids);
  await spool.markStored(ids[0] ?? '', 'a', 0);
  const first = spool.get(ids[0] ?? '');
  const second = spool.get(ids[1] ?? '');
  const stats = spool.stats();
  t.equal(stats.objects, 5);
  t.equal(stats.bytes, bytes);
  t.same(stats.destinations.a, { queued: 4, sending: 0, setAside: 0, awaitingCommitment: 0, bytesQueued: bytes - (first?.bytes ?? 0), oldestQueuedAt: second?.queuedAt });
  t.same(stats.destinations.b, { queued: 5, sending: 0, setAside: 0, awaitingCommitment: 0, bytesQueued: bytes, oldestQueuedAt: first?.queuedAt });
});

t.test('spool rejects bad calls', async (t) => {
  const { spool } = await tempSpool(t);
  const { part10, meta } = makeObject(`${UID_ROOT}.7`);
  await t.rejects(spool.add(part10, { ...meta, sopInstanceUid: `${UID_ROOT}.8` }), { code: 'DICOM_OBJECT_INVALID' });
  await t.rejects(spool.add(Buffer.from('not dicom'), meta), { code: 'DICOM_OBJECT_INVALID' });
  const entry = await spool.add(part10, meta);
  await t.rejects(spool.markStored(entry.id, 'c', 0), { code: 'SPOOL_UNKNOWN_OBJECT', message: /no delivery record for destination c/ });
  await t.rejects(spool.read('../../etc/passwd'), { code: 'SPOOL_UNKNOWN_OBJECT' });
  await spool.close();
  await t.rejects(spool.add(part10, meta), { code: 'SPOOL_WRITE_FAILED', message: /after close/ });
});

t.test('spool logs ids and no patient data', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-spool-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const { log, lines } = memoryLogger();
  const spool = new Spool({ directory, destinations: plain('a'), log });
  await spool.open();
  const { part10, meta } = makeObject(`${UID_ROOT}.9`);
  const entry = await spool.add(part10, meta);
  await spool.markSetAside(entry.id, 'a', 'rejected');
  const output = JSON.stringify(lines());
  t.same(lines().map((line) => line.msg), ['spool opened', 'object queued', 'object set aside']);
  t.same(lines().slice(1).map((line) => line.objectId), [entry.id, entry.id]);
  t.notMatch(output, /Spool\^Test|SPOOLTEST/, 'patient name and id absent');
  t.notMatch(output, new RegExp(meta.sopInstanceUid.replace(/\./g, '\\.')), 'SOP Instance UID absent');
});

t.test('spool pending gives the oldest queued entries up to a limit, leaving out skipped ones', async (t) => {
  const { spool } = await tempSpool(t, ['a']);
  const ids: string[] = [];
  for (let index = 0; index < 5; index += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.7${index}`);
    ids.push((await spool.add(part10, meta)).id);
  }
  await spool.markSending([ids[0] as string], 'a');

  t.same(spool.pending('a').map((entry) => entry.id), ids.slice(1), 'every queued entry, oldest first; the one sending is left out');
  t.same(spool.pending('a', { limit: 2 }).map((entry) => entry.id), ids.slice(1, 3), 'the oldest two');
  const skipped = new Set([ids[1], ids[3]]);
  t.same(spool.pending('a', { limit: 2, skip: (entry) => skipped.has(entry.id) }).map((entry) => entry.id), [ids[2], ids[4]], 'skipped entries do not count toward the limit');
  t.same(spool.pending('a', { limit: 0 }), []);

  const copy = spool.pending('a', { limit: 1 })[0] as SpoolEntry;
  copy.deliveries.a = { state: 'stored', attempts: 9, updatedAt: copy.queuedAt };
  t.equal(spool.get(copy.id)?.deliveries.a?.state, 'queued', 'pending returns copies');
});

t.test('unsent object keeps its attempts', async (t) => {
  const { directory, spool } = await tempSpool(t, ['a']);
  const { part10, meta } = makeObject(`${UID_ROOT}.81`);
  const { id } = await spool.add(part10, meta);
  await spool.markSending([id], 'a');
  await spool.markFailed(id, 'a', 'peer out of resources (status 0xA700)', 0xa700);
  const failed = spool.get(id)?.deliveries.a;
  t.equal(failed?.attempts, 1);

  await spool.markSending([id], 'a');
  await spool.markUnsent(id, 'a');
  const { updatedAt: _updated, ...record } = spool.get(id)?.deliveries.a ?? { updatedAt: '' };
  t.same(record, { state: 'queued', attempts: 1, lastError: 'peer out of resources (status 0xA700)', lastStatus: 0xa700 }, 'queued, with the attempts and error it had');
  await spool.markUnsent(id, 'a');
  t.equal(spool.get(id)?.deliveries.a?.attempts, 1, 'an object not being sent is left as it is');

  // After a restart, 'sending' reads back with one attempt more. An unsent object must not.
  await spool.close();
  const reopened = new Spool({ directory, destinations: plain('a'), log: createLogger('silent') });
  const report = await reopened.open();
  t.teardown(() => reopened.close());
  t.equal(report.sendingRequeued, 0, 'no interrupted send to requeue');
  t.same(reopened.get(id)?.deliveries.a?.attempts, 1, 'still one attempt after the restart');
  t.same(reopened.pending('a').map((entry) => entry.id), [id]);
});

t.test('spool flush covers results waiting for the lock', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-spool-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  // Results would wait ten minutes for others to share their fdatasync, unless flushed.
  const spool = new Spool({ directory, destinations: plain('a', 'b'), log: createLogger('silent'), syncDelayMs: 600_000 });
  await spool.open();
  t.teardown(() => spool.close());
  const { part10, meta } = makeObject(`${UID_ROOT}.90`);
  const { id } = await spool.add(part10, meta);
  await spool.markSending([id], 'a');
  await spool.markSending([id], 'b');

  // The result for b waits for the object's lock, which a's result holds until it is synced.
  const recorded: string[] = [];
  const results = Promise.all([spool.markStored(id, 'a', 0).then(() => recorded.push('a')), spool.markStored(id, 'b', 0).then(() => recorded.push('b'))]);
  await new Promise((resolve) => setImmediate(resolve));
  spool.flushResults();

  const bound = new Promise((resolve) => setTimeout(resolve, 10_000, 'not recorded'));
  t.not(await Promise.race([results, bound]), 'not recorded', 'both results recorded without waiting for a group');
  t.same(recorded, ['a', 'b']);
  t.equal(spool.get(id)?.deliveries.b?.state, 'stored');
});
