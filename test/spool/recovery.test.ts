import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { Spool } from '../../src/spool/spool.js';
import type { SpoolEntry } from '../../src/spool/types.js';
import { UID_ROOT, makeObject, plain, whenRemoved } from './fixtures/objects.js';

async function tempDirectory(t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ directory: string; objects: string }> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-recovery-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return { directory, objects: path.join(directory, 'objects') };
}

async function openSpool(directory: string, destinations = ['a', 'b']): Promise<{ spool: Spool; report: Awaited<ReturnType<Spool['open']>> }> {
  const spool = new Spool({ directory, destinations: plain(...destinations), log: createLogger('silent') });
  const report = await spool.open();
  return { spool, report };
}

/** Adds objects to a fresh spool and closes it, as a run before a crash would. */
async function seed(directory: string, count: number, destinations = ['a', 'b']): Promise<SpoolEntry[]> {
  const { spool } = await openSpool(directory, destinations);
  const entries: SpoolEntry[] = [];
  for (let i = 0; i < count; i += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.20.${i}`);
    entries.push(await spool.add(part10, meta));
  }
  await spool.close();
  return entries;
}

t.test('recovery removes leftover temp files', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const [entry] = await seed(directory, 1);
  await writeFile(path.join(objects, '20261214T101530.123Z-000000.dcm.tmp'), Buffer.alloc(1000, 1));
  await writeFile(path.join(objects, `${entry?.id}.json.tmp`), '{"id":');
  const { spool, report } = await openSpool(directory);
  t.equal(report.tempFilesRemoved, 2);
  t.equal(report.objects, 1);
  t.same((await readdir(objects)).sort(), [`${entry?.id}.dcm`, `${entry?.id}.json`]);
  t.same(spool.get(entry?.id ?? ''), entry, 'committed entry unchanged');
});

t.test('recovery requeues object with missing state', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const [entry] = await seed(directory, 1);
  if (entry === undefined) throw new Error('seed added nothing');
  await unlink(path.join(objects, `${entry.id}.json`));

  const { spool, report } = await openSpool(directory);
  t.equal(report.statesRebuilt, 1);
  const recovered = spool.get(entry.id);
  t.equal(recovered?.sopInstanceUid, entry.sopInstanceUid);
  t.equal(recovered?.sopClassUid, entry.sopClassUid);
  t.equal(recovered?.transferSyntaxUid, entry.transferSyntaxUid);
  t.equal(recovered?.bytes, entry.bytes);
  t.same(Object.values(recovered?.deliveries ?? {}).map((record) => record.state), ['queued', 'queued']);
  const onDisk = JSON.parse(await readFile(path.join(objects, `${entry.id}.json`), 'utf8')) as SpoolEntry;
  t.same(onDisk, recovered, 'rebuilt state written');
});

t.test('recovery requeues object with torn state', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const entries = await seed(directory, 3);
  const [torn, empty, wrongSize] = entries;
  if (torn === undefined || empty === undefined || wrongSize === undefined) throw new Error('seed added too few');
  const { spool: first } = await openSpool(directory);
  await first.markStored(torn.id, 'a', 0);
  await first.close();

  const tornPath = path.join(objects, `${torn.id}.json`);
  const text = await readFile(tornPath, 'utf8');
  await writeFile(tornPath, text.slice(0, Math.floor(text.length / 2)));
  await truncate(path.join(objects, `${empty.id}.json`), 0);
  const other = JSON.parse(await readFile(path.join(objects, `${wrongSize.id}.json`), 'utf8')) as SpoolEntry;
  await writeFile(path.join(objects, `${wrongSize.id}.json`), JSON.stringify({ ...other, bytes: other.bytes + 1 }));

  const { spool, report } = await openSpool(directory);
  t.equal(report.statesRebuilt, 3);
  t.equal(report.objects, 3);
  t.equal(spool.get(torn.id)?.deliveries.a?.state, 'stored', 'a result in the journal survives a torn state file');
  t.equal(spool.get(torn.id)?.deliveries.b?.state, 'queued', 'a destination without a journal record is queued again');
  t.equal(spool.get(wrongSize.id)?.bytes, wrongSize.bytes, 'size taken from the object file');
  for (const entry of entries) t.ok((await spool.read(entry.id)).equals(makeObject(entry.sopInstanceUid).part10), `${entry.id} intact`);
});

t.test('recovery removes orphan state and delivered objects', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const [orphan, delivered, kept] = await seed(directory, 3);
  if (orphan === undefined || delivered === undefined || kept === undefined) throw new Error('seed added too few');
  await unlink(path.join(objects, `${orphan.id}.dcm`));
  // An interrupted removal can leave an object whose state records that every destination stored it.
  const state = JSON.parse(await readFile(path.join(objects, `${delivered.id}.json`), 'utf8')) as SpoolEntry;
  for (const record of Object.values(state.deliveries)) record.state = 'stored';
  await writeFile(path.join(objects, `${delivered.id}.json`), JSON.stringify(state));

  const { spool, report } = await openSpool(directory);
  t.equal(report.orphanStatesRemoved, 1);
  t.equal(report.deliveredRemoved, 1);
  t.same(spool.list().map((entry) => entry.id), [kept.id]);
  t.same((await readdir(objects)).sort(), [`${kept.id}.dcm`, `${kept.id}.json`]);
});

t.test('recovery queues for destination added later', async (t) => {
  const { directory } = await tempDirectory(t);
  const [entry] = await seed(directory, 1, ['a']);
  if (entry === undefined) throw new Error('seed added nothing');
  const { spool: first } = await openSpool(directory, ['a']);
  await first.markSetAside(entry.id, 'a', 'rejected');
  await first.close();

  const { spool, report } = await openSpool(directory, ['a', 'b']);
  t.equal(report.destinationsAdded, 1);
  t.equal(spool.get(entry.id)?.deliveries.a?.state, 'set-aside', 'existing record kept');
  t.equal(spool.get(entry.id)?.deliveries.b?.state, 'queued', 'new destination queued');
  t.same(spool.pending('b').map((e) => e.id), [entry.id]);

  await spool.close();
  const { spool: third, report: unconfigured } = await openSpool(directory, ['b']);
  t.same(unconfigured.unconfiguredDestinations, ['a'], 'a removed destination is reported');
  t.equal(third.get(entry.id)?.deliveries.a?.state, 'set-aside', 'and its record kept');
});

t.test('recovery leaves unreadable object in place', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const [entry] = await seed(directory, 1);
  const garbageId = '20200101T000000.000Z-000000';
  await writeFile(path.join(objects, `${garbageId}.dcm`), Buffer.from('this is not DICOM'));
  await writeFile(path.join(objects, 'README'), 'operator note');

  const { spool, report } = await openSpool(directory);
  t.same(report.unreadableObjects, [garbageId]);
  t.same(spool.list().map((e) => e.id), [entry?.id]);
  t.ok((await readdir(objects)).includes(`${garbageId}.dcm`), 'not deleted');
  t.ok((await readdir(objects)).includes('README'), 'unknown file not deleted');
});

t.test('ids stay ordered after clock goes back', async (t) => {
  const { directory } = await tempDirectory(t);
  const entries = await seed(directory, 2);
  const spool = new Spool({ directory, destinations: plain('a'), log: createLogger('silent'), now: () => new Date(Date.UTC(2001, 0, 1)) });
  await spool.open();
  const { part10, meta } = makeObject(`${UID_ROOT}.21`);
  const added = await spool.add(part10, meta);
  const last = entries[entries.length - 1]?.id ?? '';
  t.ok(added.id > last, `${added.id} sorts after ${last}`);
  t.same(spool.pending('a').map((e) => e.id), [...entries.map((e) => e.id), added.id]);
});

t.test('recovery skips a FIFO object file', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const [entry] = await seed(directory, 1);
  // Reading a FIFO blocks until a writer opens it, and none ever will: the spool must not open it.
  const fifoId = '20200101T000000.000Z-000001';
  await promisify(execFile)('mkfifo', [path.join(objects, `${fifoId}.dcm`)]);

  const { spool, report } = await openSpool(directory);
  t.same(report.unreadableObjects, [fifoId], 'reported as unreadable');
  t.same(spool.list().map((e) => e.id), [entry?.id], 'the regular object is recovered');
  t.ok((await readdir(objects)).includes(`${fifoId}.dcm`), 'left in place');
});

t.test('object left in place keeps its deliveries', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const [entry] = await seed(directory, 1);
  const id = entry?.id ?? '';
  const first = await openSpool(directory);
  await first.spool.markSending([id], 'a');
  await first.spool.markStored(id, 'a', 0);
  await first.spool.close();

  // An operator moved the file out and linked it back: the spool must not read it, nor forget it.
  const objectFile = path.join(objects, `${id}.dcm`);
  const outside = path.join(directory, 'moved-out.dcm');
  await rename(objectFile, outside);
  await symlink(outside, objectFile);
  const linked = await openSpool(directory);
  t.same(linked.report.unreadableObjects, [id], 'the link is reported as unreadable');
  t.equal(linked.report.orphanStatesRemoved, 0, 'its state file is not taken for an orphan');
  t.ok((await readdir(objects)).includes(`${id}.json`), 'the state file stays');
  await linked.spool.close();

  await unlink(objectFile);
  await rename(outside, objectFile);
  const { spool } = await openSpool(directory);
  t.teardown(() => spool.close());
  t.equal(spool.get(id)?.deliveries.a?.state, 'stored', 'the delivery recorded before is kept');
  t.equal(spool.get(id)?.deliveries.b?.state, 'queued');
  t.same(spool.pending('a'), [], 'nothing to send again to a');
});

t.test('folder named like a state file', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const [entry] = await seed(directory, 1);
  const id = entry?.id ?? '';
  const stateName = path.join(objects, `${id}.json`);
  await unlink(stateName);
  await mkdir(stateName);

  const first = await openSpool(directory);
  t.same(first.spool.list().map((e) => e.id), [id], 'the object is recovered');
  await first.spool.markSending([id], 'a');
  await first.spool.markStored(id, 'a', 0);
  await first.spool.close();

  const { spool } = await openSpool(directory);
  t.teardown(() => spool.close());
  t.equal(spool.get(id)?.deliveries.a?.state, 'stored', 'the journal holds the record');
  t.ok((await stat(stateName)).isDirectory(), 'the folder is left as it was');
});

t.test('delivered object beside a state folder', async (t) => {
  const { directory, objects } = await tempDirectory(t);
  const [entry] = await seed(directory, 1, ['a']);
  const id = entry?.id ?? '';
  const stateName = path.join(objects, `${id}.json`);
  await unlink(stateName);
  await mkdir(stateName);

  // Retention 0: the object is removed as soon as it is delivered.
  const spool = new Spool({ directory, destinations: plain('a'), log: createLogger('silent'), retentionHours: 0 });
  await spool.open();
  t.teardown(() => spool.close());
  await spool.markSending([id], 'a');
  await spool.markStored(id, 'a', 0);
  await whenRemoved(spool, [id]);
  t.same(spool.list(), [], 'the delivered object left the spool');
  t.same(await readdir(objects), [`${id}.json`], 'its file is removed and the folder left');
});
