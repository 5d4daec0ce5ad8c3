import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { Spool, type SpoolDestination, type SpoolOptions } from '../../src/spool/spool.js';
import type { SpoolEntry } from '../../src/spool/types.js';
import { UID_ROOT, makeObject, plain, whenRemoved } from './fixtures/objects.js';
import { readState } from './fixtures/state.js';

type Teardown = { teardown: (fn: () => Promise<void>) => void };

async function tempDirectory(t: Teardown): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-lifecycle-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

async function openSpool(directory: string, destinations: SpoolDestination[], options: Partial<SpoolOptions> = {}): Promise<Spool> {
  const spool = new Spool({ directory, destinations, log: createLogger('silent'), ...options });
  await spool.open();
  return spool;
}

/** Creates a clock the test moves by hand. */
function manualClock(start = Date.UTC(2026, 11, 14, 8, 0, 0)): { now: () => Date; advance: (ms: number) => void } {
  let time = start;
  return { now: () => new Date(time), advance: (ms) => (time += ms) };
}

const commitmentOnA: SpoolDestination[] = [
  { name: 'a', commitment: true },
  { name: 'b', commitment: false },
];

t.test('sending is persisted and read back as queued', async (t) => {
  const directory = await tempDirectory(t);
  const spool = await openSpool(directory, plain('a', 'b'));
  const firstObject = makeObject(`${UID_ROOT}.40.1`);
  const secondObject = makeObject(`${UID_ROOT}.40.2`);
  const first = await spool.add(firstObject.part10, firstObject.meta);
  const second = await spool.add(secondObject.part10, secondObject.meta);

  await spool.markSending([first.id, second.id, '20990101T000000.000Z-000000'], 'a');
  t.same(spool.pending('a'), [], 'objects taken by a sender are not pending');
  t.same(spool.pending('b').map((entry) => entry.id), [first.id, second.id], 'other destinations unaffected');
  t.equal((await readState(directory, first.id)).deliveries.a?.state, 'sending', 'sending is written to the journal');
  t.equal(spool.stats().destinations.a?.sending, 2);
  t.equal(spool.stats().destinations.a?.bytesQueued, first.bytes + second.bytes, 'sending objects count as waiting');

  await spool.markStored(first.id, 'a', 0);
  t.equal(spool.get(first.id)?.deliveries.a?.state, 'stored');
  await spool.close();

  const reopened = await openSpool(directory, plain('a', 'b'));
  const record = reopened.get(second.id)?.deliveries.a;
  t.equal(record?.state, 'queued', 'an interrupted send is queued again');
  t.equal(record?.attempts, 1, 'and counts as an attempt');
  t.equal(record?.lastError, 'sending interrupted by a restart');
  t.same(reopened.pending('a').map((entry) => entry.id), [second.id]);
  t.equal(reopened.get(first.id)?.deliveries.a?.state, 'stored', 'a recorded result survives');
  await reopened.close();
});

t.test('recovery counts interrupted sends', async (t) => {
  const directory = await tempDirectory(t);
  const spool = await openSpool(directory, plain('a'));
  const { part10, meta } = makeObject(`${UID_ROOT}.41.1`);
  const entry = await spool.add(part10, meta);
  await spool.markSending([entry.id], 'a');
  await spool.close();

  const reopened = new Spool({ directory, destinations: plain('a'), log: createLogger('silent') });
  const report = await reopened.open();
  t.equal(report.sendingRequeued, 1);
  await reopened.close();
});

t.test('commitment destination waits for commitment', async (t) => {
  const directory = await tempDirectory(t);
  const spool = await openSpool(directory, commitmentOnA);
  const removed: string[] = [];
  spool.on('objectRemoved', ({ id, cause }) => removed.push(`${id} ${cause}`));
  const { part10, meta } = makeObject(`${UID_ROOT}.42.1`);
  const entry = await spool.add(part10, meta);

  await spool.markStored(entry.id, 'a', 0);
  await spool.markStored(entry.id, 'b', 0);
  await spool.sweep();
  t.ok(spool.get(entry.id), 'stored everywhere but not committed: kept');
  t.same(spool.awaitingCommitment('a').map((e) => e.id), [entry.id]);
  t.same(spool.awaitingCommitment('b'), [], 'no commitment for b');
  t.equal(spool.stats().destinations.a?.awaitingCommitment, 1);
  t.equal(spool.stats().retained, 0, 'not done yet');

  await spool.requeue(entry.id, 'a', 'commitment failed: 0x0110');
  const requeued = spool.get(entry.id)?.deliveries.a;
  t.equal(requeued?.state, 'queued', 'a failed commitment queues it again');
  t.equal(requeued?.lastError, 'commitment failed: 0x0110');
  t.same(spool.pending('a').map((e) => e.id), [entry.id]);
  t.same(spool.awaitingCommitment('a'), []);

  await spool.markStored(entry.id, 'a', 0);
  await spool.markCommitted(entry.id, 'a');
  await whenRemoved(spool, [entry.id]);
  t.same(removed, [`${entry.id} delivered`], 'removed once committed, with retention 0');
  t.same(await readdir(path.join(directory, 'objects')), []);
  await spool.close();
});

t.test('store after commitment keeps it committed', async (t) => {
  const directory = await tempDirectory(t);
  const spool = await openSpool(directory, commitmentOnA, { retentionHours: 1 });
  const { part10, meta } = makeObject(`${UID_ROOT}.43.1`);
  const entry = await spool.add(part10, meta);
  await spool.markCommitted(entry.id, 'a');
  await spool.markStored(entry.id, 'a', 0);
  t.equal(spool.get(entry.id)?.deliveries.a?.state, 'committed');
  await spool.markStored(entry.id, 'b', 0);
  t.equal(spool.stats().retained, 1, 'done and retained');

  await spool.requeue(entry.id, 'a');
  t.equal(spool.get(entry.id)?.deliveries.a?.state, 'queued', 'a committed object can be sent again');
  t.equal(spool.stats().retained, 0, 'no longer retained once queued again');
  await spool.close();
});

t.test('requeue leaves queued and sending alone', async (t) => {
  const directory = await tempDirectory(t);
  const spool = await openSpool(directory, plain('a', 'b'));
  const { part10, meta } = makeObject(`${UID_ROOT}.44.1`);
  const entry = await spool.add(part10, meta);
  await spool.markSending([entry.id], 'a');
  t.equal(await spool.requeueRecord(entry.id, 'a'), undefined);
  t.equal(await spool.requeueRecord(entry.id, 'b'), undefined);
  t.equal(spool.get(entry.id)?.deliveries.a?.state, 'sending');
  await spool.markSetAside(entry.id, 'b', 'rejected', 0xc000);
  t.equal(await spool.requeueRecord(entry.id, 'b'), 'set-aside');
  await t.rejects(spool.requeue(entry.id, 'c'), { code: 'SPOOL_UNKNOWN_OBJECT' });
  await spool.close();
});

t.test('retention keeps delivered objects, then removes oldest first', async (t) => {
  const directory = await tempDirectory(t);
  const clock = manualClock();
  const spool = await openSpool(directory, plain('a'), { retentionHours: 1, now: clock.now });
  const removed: string[] = [];
  spool.on('objectRemoved', ({ id, cause }) => removed.push(`${id} ${cause}`));
  const entries: SpoolEntry[] = [];
  for (let i = 0; i < 3; i += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.45.${i}`);
    entries.push(await spool.add(part10, meta));
  }
  const [first, second, third] = entries as [SpoolEntry, SpoolEntry, SpoolEntry];

  await spool.markStored(first.id, 'a', 0);
  clock.advance(10 * 60_000);
  await spool.markStored(second.id, 'a', 0);
  t.equal(spool.stats().retained, 2, 'delivered objects kept');
  t.ok((await spool.read(first.id)).equals(makeObject(first.sopInstanceUid).part10), 'and readable for a re-send');

  clock.advance(49 * 60_000);
  t.equal(await spool.sweep(), 0, 'nothing removed before an hour has passed');
  clock.advance(2 * 60_000);
  t.equal(await spool.sweep(), 1);
  t.same(removed, [`${first.id} retention-ended`]);
  clock.advance(10 * 60_000);
  t.equal(await spool.sweep(), 1);
  t.same(removed, [`${first.id} retention-ended`, `${second.id} retention-ended`]);
  t.same(spool.list().map((entry) => entry.id), [third.id], 'the queued object stays');
  t.same((await readdir(path.join(directory, 'objects'))).sort(), [`${third.id}.dcm`, `${third.id}.json`]);
  await spool.close();
});

t.test('open removes objects whose retention ended', async (t) => {
  const directory = await tempDirectory(t);
  const clock = manualClock();
  const spool = await openSpool(directory, plain('a'), { retentionHours: 2, now: clock.now });
  const { part10, meta } = makeObject(`${UID_ROOT}.46.1`);
  const entry = await spool.add(part10, meta);
  await spool.markStored(entry.id, 'a', 0);
  await spool.close();

  const early = new Spool({ directory, destinations: plain('a'), log: createLogger('silent'), retentionHours: 2, now: clock.now });
  t.equal((await early.open()).deliveredRemoved, 0, 'kept while retention lasts');
  await early.close();

  clock.advance(2 * 3_600_000 + 1);
  const late = new Spool({ directory, destinations: plain('a'), log: createLogger('silent'), retentionHours: 2, now: clock.now });
  const report = await late.open();
  t.equal(report.deliveredRemoved, 1);
  t.equal(report.objects, 0);
  await late.close();
});

t.test('add if new skips a known SOP Instance UID', async (t) => {
  const directory = await tempDirectory(t);
  const spool = await openSpool(directory, plain('a'));
  const { part10, meta } = makeObject(`${UID_ROOT}.47.1`);
  const first = await spool.addIfNew(part10, meta);
  const again = await spool.addIfNew(part10, meta);
  t.equal(first.added, true);
  t.equal(again.added, false);
  t.equal(again.entry.id, first.entry.id);
  t.equal(spool.list().length, 1);
  t.equal(spool.findBySopInstanceUid(meta.sopInstanceUid)?.id, first.entry.id);
  await spool.close();
});
