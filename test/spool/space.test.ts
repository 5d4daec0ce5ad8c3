import { mkdir, mkdtemp, readdir, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { EndocapError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { Spool, type SpoolAlarm, type SpoolOptions } from '../../src/spool/spool.js';
import type { SpoolEntry } from '../../src/spool/types.js';
import { mountTmpfs, tmpfsProblem, unmount } from '../helpers/small-filesystem.js';
import { UID_ROOT, makeObject, plain } from './fixtures/objects.js';

type Teardown = { teardown: (fn: () => Promise<void>) => void };

async function tempDirectory(t: Teardown): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-space-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

/** Opens a spool and records its alarm events. */
async function openSpool(directory: string, options: Partial<SpoolOptions>): Promise<{ spool: Spool; raised: SpoolAlarm[]; cleared: string[] }> {
  const spool = new Spool({ directory, destinations: plain('a'), log: createLogger('silent'), retentionHours: 24, ...options });
  const raised: SpoolAlarm[] = [];
  const cleared: string[] = [];
  spool.on('alarmRaised', (alarm) => raised.push(alarm));
  spool.on('alarmCleared', ({ id }) => cleared.push(id));
  await spool.open();
  return { spool, raised, cleared };
}

/** Builds an object of exactly `payload` JPEG bytes plus the DICOM header. */
function sized(index: string, payload: number): ReturnType<typeof makeObject> {
  return makeObject(`${UID_ROOT}.50.${index}`, payload, payload);
}

async function add(spool: Spool, object: ReturnType<typeof makeObject>): Promise<SpoolEntry> {
  return spool.add(object.part10, object.meta);
}

t.test('quota removes retained objects oldest first', async (t) => {
  const directory = await tempDirectory(t);
  const size = sized('0', 10_000).part10.length;
  const { spool, raised, cleared } = await openSpool(directory, { maxBytes: Math.floor(size * 3.5) });
  const removed: string[] = [];
  spool.on('objectRemoved', ({ id, cause }) => removed.push(`${id} ${cause}`));

  const [first, second, third] = [await add(spool, sized('1', 10_000)), await add(spool, sized('2', 10_000)), await add(spool, sized('3', 10_000))];
  if (!first || !second || !third) throw new Error('adds failed');
  await spool.markStored(first.id, 'a', 0);
  await spool.markStored(second.id, 'a', 0);
  t.equal(spool.stats().retained, 2);

  const fourth = await add(spool, sized('4', 10_000));
  t.same(removed, [`${first.id} space-needed`], 'the oldest retained object made room');
  const fifth = await add(spool, sized('5', 10_000));
  t.same(removed, [`${first.id} space-needed`, `${second.id} space-needed`]);
  t.same(raised, [], 'no alarm while retained objects could make room');

  const sixth = sized('6', 10_000);
  const error = await spool.add(sixth.part10, sixth.meta).then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  t.ok(error instanceof EndocapError, 'add rejected');
  t.equal((error as EndocapError).code, 'SPOOL_FULL');
  t.equal((error as EndocapError).retryable, true);
  t.match((error as EndocapError).message, /not yet delivered, spool\.maxBytes is/);
  t.equal(raised.length, 1);
  t.same(raised[0] && { id: raised[0].id, severity: raised[0].severity }, { id: 'spool-full', severity: 'critical' });
  await t.rejects(spool.add(sixth.part10, sixth.meta), { code: 'SPOOL_FULL' }, 'still full');
  t.equal(raised.length, 1, 'the alarm is raised once');
  t.same(spool.stats().alarms.map((alarm) => alarm.id), ['spool-full'], 'stats list the alarm');

  t.same(spool.list().map((entry) => entry.id), [third.id, fourth.id, fifth.id], 'queued objects are never removed');
  for (const [entry, index] of [[third, '3'], [fourth, '4'], [fifth, '5']] as const) {
    t.ok((await spool.read(entry.id)).equals(sized(index, 10_000).part10), `${entry.id} intact`);
  }

  await spool.markStored(third.id, 'a', 0);
  await t.resolves(waitUntil(() => cleared.length === 1), 'cleared once a delivered object can make room');
  t.same(cleared, ['spool-full']);
  await add(spool, sixth);
  t.same(removed.at(-1), `${third.id} space-needed`);
  await spool.close();
});

t.test('low free space rejects adds', async (t) => {
  const directory = await tempDirectory(t);
  const seeded = await openSpool(directory, {});
  const queued = [await add(seeded.spool, sized('10', 5_000)), await add(seeded.spool, sized('11', 5_000))];
  const retained = await add(seeded.spool, sized('12', 5_000));
  await seeded.spool.markStored(retained.id, 'a', 0);
  await seeded.spool.close();

  // statfs is real: ask for 1 GiB more free space than the filesystem has.
  const { bavail, bsize } = await statfs(directory);
  const { spool, raised } = await openSpool(directory, { minFreeBytes: bavail * bsize + 1024 ** 3 });
  const next = sized('13', 5_000);
  await t.rejects(spool.add(next.part10, next.meta), { code: 'SPOOL_FULL', message: /free on the spool's filesystem, spool\.minFreeBytes keeps/ });
  t.equal(raised.length, 1);
  t.match(raised[0]?.reason, /spool\.minFreeBytes/);
  t.same(spool.list().map((entry) => entry.id), [...queued.map((entry) => entry.id), retained.id], 'nothing removed: the retained object could not make enough room');
  for (const entry of queued) t.ok((await spool.read(entry.id)).length === entry.bytes, `${entry.id} intact`);
  t.same((await readdir(path.join(directory, 'objects'))).filter((name) => name.endsWith('.tmp')), [], 'no temp file left');
  await spool.close();
});

/**
 * A real ENOSPC needs a small filesystem. Where mounting a tmpfs is not
 * permitted the ENOSPC test is skipped, and the statfs threshold test above
 * covers the same rejection path.
 */
const noTmpfs = await tmpfsProblem();

t.test('real ENOSPC rejects add and keeps queue', { skip: noTmpfs ?? false }, async (t) => {
  const directory = await tempDirectory(t);
  const mountPoint = path.join(directory, 'small');
  await mkdir(mountPoint);
  const problem = await mountTmpfs(mountPoint, '2m');
  if (problem !== undefined) throw new Error(problem);
  t.teardown(() => unmount(mountPoint));

  const { spool, raised, cleared } = await openSpool(path.join(mountPoint, 'spool'), { minFreeBytes: 0 });
  const removed: string[] = [];
  spool.on('objectRemoved', ({ id, cause }) => removed.push(`${id} ${cause}`));
  const old = await add(spool, sized('20', 300_000));
  const queued = await add(spool, sized('21', 300_000));
  await spool.markStored(old.id, 'a', 0);

  const filler = path.join(mountPoint, 'filler');
  const { bavail, bsize } = await statfs(mountPoint);
  await writeFile(filler, Buffer.alloc(bavail * bsize - 150 * 1024));

  const admitted = await add(spool, sized('22', 300_000));
  t.same(removed, [`${old.id} space-needed`], 'ENOSPC removed the retained object and the add was tried again');
  t.same(raised, [], 'no alarm when room could be made');

  const rejected = sized('23', 300_000);
  await t.rejects(spool.add(rejected.part10, rejected.meta), { code: 'SPOOL_FULL', message: /no space left/ });
  t.equal(raised.length, 1, 'alarm raised');
  t.same((await readdir(path.join(mountPoint, 'spool', 'objects'))).filter((name) => name.endsWith('.tmp')), [], 'temp file removed');
  t.same(spool.list().map((entry) => entry.id), [queued.id, admitted.id], 'queued objects kept');
  t.ok((await spool.read(queued.id)).equals(sized('21', 300_000).part10), 'queued object intact');
  t.ok((await spool.read(admitted.id)).equals(sized('22', 300_000).part10), 'new object intact');

  await unlink(filler);
  await spool.sweep();
  t.same(cleared, ['spool-full'], 'cleared once space returned');
  await add(spool, rejected);
  t.equal(spool.list().length, 3, 'adds work again');
  await spool.close();
});

async function waitUntil(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
