import { appendFile, mkdir, mkdtemp, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { DeliveryJournal, readJournal, type DeliveryJournalOptions } from '../../src/spool/delivery-journal.js';
import type { DeliveryRecord } from '../../src/spool/types.js';
import { mountTmpfs, tmpfsProblem, unmount } from '../helpers/small-filesystem.js';

async function tempFile(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-journal-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return path.join(directory, 'deliveries.journal');
}

function record(state: DeliveryRecord['state'], attempts = 1): DeliveryRecord {
  return { state, attempts, updatedAt: '2026-12-14T08:00:00.000Z' };
}

async function openJournal(file: string, options: Partial<DeliveryJournalOptions> = {}): Promise<DeliveryJournal> {
  const journal = new DeliveryJournal({ file, log: createLogger('silent'), isLive: () => true, beforeCompaction: async () => undefined, ...options });
  await journal.open(new Map());
  return journal;
}

t.test('journal reads back the last record per destination', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file);
  await journal.append('obj-1', 'a', record('sending', 0), false);
  await journal.append('obj-1', 'a', record('stored'), true);
  await journal.append('obj-1', 'b', record('set-aside'), true);
  await journal.append('obj-2', 'a', record('queued', 2), true);
  await journal.close();

  const { records, skippedLines } = await readJournal(file);
  t.equal(skippedLines, 0);
  t.same(records.get('obj-1')?.get('a'), record('stored'), 'the later line wins');
  t.same(records.get('obj-1')?.get('b'), record('set-aside'));
  t.same(records.get('obj-2')?.get('a'), record('queued', 2));
});

t.test('journal of a missing file is empty', async (t) => {
  const file = await tempFile(t);
  const { records, skippedLines } = await readJournal(file);
  t.equal(records.size, 0);
  t.equal(skippedLines, 0);
});

t.test('journal skips a torn last line', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file);
  await journal.append('obj-1', 'a', record('stored'), true);
  await journal.close();
  const complete = await readFile(file, 'utf8');
  // A crash during an append leaves the start of a line, never reported as written.
  await appendFile(file, complete.slice(0, 25).replace('obj-1', 'obj-2'));

  const { records, skippedLines } = await readJournal(file);
  t.equal(skippedLines, 1);
  t.same([...records.keys()], ['obj-1']);

  const reopened = await openJournal(file);
  await reopened.append('obj-3', 'a', record('stored'), true);
  await reopened.close();
  const after = await readJournal(file);
  t.equal(after.skippedLines, 0, 'open rewrote the journal without the torn line');
  t.same([...after.records.keys()], ['obj-3'], 'open keeps only the records it was given');
});

t.test('journal skips lines that are not records', async (t) => {
  const file = await tempFile(t);
  const line = (value: unknown): string => `${JSON.stringify(value)}\n`;
  await writeFile(
    file,
    [
      line({ id: 'obj-1', destination: 'a', record: record('stored') }),
      line({ id: 'obj-2', destination: 'a', record: { state: 'delivered', attempts: 1, updatedAt: 'x' } }),
      line({ id: 'obj-3', record: record('stored') }),
      '\u0000\u0000\u0000\n',
    ].join(''),
  );
  const { records, skippedLines } = await readJournal(file);
  t.equal(skippedLines, 3);
  t.same([...records.keys()], ['obj-1']);
});

t.test('journal groups concurrent appends into few syncs', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file);
  await Promise.all(Array.from({ length: 40 }, (_, index) => journal.append(`obj-${index}`, 'a', record('stored'), true)));
  const counts = journal.stats();
  await journal.close();
  t.equal(counts.lines, 40);
  t.ok(counts.syncs < 40, `${counts.syncs} fdatasyncs for 40 records`);
  t.ok(counts.syncs >= 1, 'durable records are synced');
  t.equal((await readJournal(file)).records.size, 40);
});

t.test('journal lets records that arrive apart share an fdatasync', async (t) => {
  const file = await tempFile(t);
  // A long delay: the records arrive 5 ms apart, all within it.
  const journal = await openJournal(file, { syncDelayMs: 400, syncGroupLines: 100 });
  const appended: Array<Promise<void>> = [];
  let synced = 0;
  for (let index = 0; index < 6; index += 1) {
    appended.push(journal.append(`obj-${index}`, 'a', record('stored'), true).then(() => void (synced += 1)));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  t.equal(synced, 0, 'no record is reported durable before its fdatasync');
  await Promise.all(appended);
  t.equal(journal.stats().writes, 1, 'one write for six records');
  t.equal(journal.stats().syncs, 1, 'one fdatasync for six records');
  t.equal((await readJournal(file)).records.size, 6, 'every record is in the file');
  await journal.close();
});

t.test('journal syncs at once when enough lines wait, and at close', async (t) => {
  const file = await tempFile(t);
  // A delay far longer than the test: only the group size and close may start an fdatasync.
  const journal = await openJournal(file, { syncDelayMs: 600_000, syncGroupLines: 3 });
  await Promise.all(['obj-1', 'obj-2', 'obj-3'].map((id) => journal.append(id, 'a', record('stored'), true)));
  t.equal(journal.stats().syncs, 1, 'three waiting lines started an fdatasync');
  const last = journal.append('obj-4', 'a', record('stored'), true);
  await journal.close();
  await last;
  t.equal(journal.stats().syncs, 2, 'close synced the last line without waiting for the delay');
  t.equal((await readJournal(file)).records.size, 4);
});

t.test('journal writes a line that need not be durable at once', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file, { syncDelayMs: 600_000, syncGroupLines: 100 });
  const durable = journal.append('obj-1', 'a', record('stored'), true);
  await journal.append('obj-2', 'a', record('sending', 0), false);
  const { records } = await readJournal(file);
  t.same([...records.keys()], ['obj-1', 'obj-2'], 'the waiting durable line went with it, in order');
  t.equal(journal.stats().syncs, 0, 'no fdatasync before one is due');
  await journal.close();
  await durable;
  t.equal(journal.stats().syncs, 1);
});

t.test('journal writes sending lines of a turn together', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file, { syncDelayMs: 600_000, syncGroupLines: 100 });
  // As a sender marks a batch as sending: one call per object, in one turn.
  await Promise.all(Array.from({ length: 20 }, (_, index) => journal.append(`obj-${index}`, 'a', record('sending', 0), false)));
  t.equal(journal.stats().writes, 1, 'one write for 20 lines');
  t.equal((await readJournal(file)).records.size, 20, 'every line is in the file');
  await journal.append('obj-20', 'a', record('sending', 0), false);
  t.equal(journal.stats().writes, 2, 'a line of a later turn is written without waiting for more');
  await journal.close();
});

t.test('journal line after a full group waits', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file, { syncDelayMs: 600_000, syncGroupLines: 3 });
  // The sync group fills in the same turn, so its write takes the sending line along.
  await Promise.all([
    journal.append('obj-0', 'a', record('sending', 0), false),
    ...['obj-1', 'obj-2', 'obj-3'].map((id) => journal.append(id, 'a', record('stored'), true)),
  ]);
  t.equal(journal.stats().writes, 1, 'one write for the group and the sending line');

  const later = journal.append('obj-4', 'a', record('stored'), true);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(journal.stats().writes, 1, 'the next durable line waits for its group');
  await journal.close();
  await later;
  t.equal(journal.stats().writes, 2, 'close wrote it');
});

t.test('journal flush syncs waiting lines at once', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file, { syncDelayMs: 600_000, syncGroupLines: 100 });
  let flushed = false;
  const first = journal.append('obj-1', 'a', record('stored'), true).then(() => {
    flushed = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.notOk(flushed, 'a durable line waits for its group');

  journal.flush();
  await first;
  t.equal(journal.stats().syncs, 1, 'flush synced it');

  let later = false;
  const second = journal.append('obj-2', 'a', record('stored'), true).then(() => {
    later = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.notOk(later, 'a line after the flush waits for its group again');
  await journal.close();
  await second;
  t.equal(journal.stats().syncs, 2);
});

t.test('journal close can be called twice', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file);
  const last = journal.append('obj-1', 'a', record('stored'), true);
  const closes = await Promise.allSettled([journal.close(), journal.close()]);
  t.same(closes.map((result) => result.status), ['fulfilled', 'fulfilled']);
  await last;
  t.equal((await readJournal(file)).records.size, 1);
});

t.test('journal written but not synced lines resolve without a sync', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file);
  await journal.append('obj-1', 'a', record('sending', 0), false);
  t.equal(journal.stats().syncs, 0, 'no fdatasync for a record that need not be durable');
  t.same((await readJournal(file)).records.get('obj-1')?.get('a'), record('sending', 0), 'yet it is in the file');
  await journal.close();
});

t.test('journal compaction keeps the last record of live objects', async (t) => {
  const file = await tempFile(t);
  const removed = new Set(['obj-gone']);
  let syncedBeforeCompaction = 0;
  const journal = await openJournal(file, {
    isLive: (id) => !removed.has(id),
    beforeCompaction: async () => {
      syncedBeforeCompaction += 1;
    },
    minLinesBeforeCompaction: 50,
  });
  await journal.append('obj-gone', 'a', record('stored'), true);
  for (let attempt = 1; attempt <= 60; attempt += 1) await journal.append('obj-kept', 'a', record('queued', attempt), attempt % 10 === 0);
  await journal.append('obj-kept', 'b', record('stored'), true);
  const counts = journal.stats();
  await journal.close();

  t.equal(counts.compactions, 2, 'compacted once at open and once after 50 lines');
  t.equal(syncedBeforeCompaction, 2, 'removals made durable before each compaction');
  const { records } = await readJournal(file);
  t.same([...records.keys()], ['obj-kept'], 'records of removed objects dropped');
  t.same(records.get('obj-kept')?.get('a'), record('queued', 60));
  t.same(records.get('obj-kept')?.get('b'), record('stored'));
  const lines = (await readFile(file, 'utf8')).split('\n').filter((line) => line !== '');
  t.ok(lines.length < 15, `${lines.length} lines left after compaction`);
  t.ok((await stat(file)).size > 0);
});

t.test('journal rejects appends after close', async (t) => {
  const file = await tempFile(t);
  const journal = await openJournal(file);
  await journal.close();
  await t.rejects(journal.append('obj-1', 'a', record('stored'), true), /after close/);
});

const noTmpfs = await tmpfsProblem();

/** Mounts a 64 KiB tmpfs for one test and removes it at its end. */
async function smallMount(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-journal-full-'));
  const mountPoint = path.join(directory, 'small');
  await mkdir(mountPoint);
  const problem = await mountTmpfs(mountPoint, '64k');
  if (problem !== undefined) throw new Error(problem);
  t.teardown(async () => {
    await unmount(mountPoint);
    await rm(directory, { recursive: true, force: true });
  });
  return mountPoint;
}

t.test('journal line cut short by a full disk is skipped', { skip: noTmpfs ?? false }, async (t) => {
  const mountPoint = await smallMount(t);

  const file = path.join(mountPoint, 'deliveries.journal');
  const journal = await openJournal(file);
  // The first line takes the journal's first page; the filler takes every page left.
  await journal.append('obj-1', 'a', record('stored'), true);
  const filler = path.join(mountPoint, 'filler');
  const { bavail, bsize } = await statfs(mountPoint);
  await writeFile(filler, Buffer.alloc(bavail * bsize));

  // Longer than the room left in the first page: part of it is written, then ENOSPC.
  const long: DeliveryRecord = { ...record('queued', 2), lastError: 'x'.repeat(6_000) };
  await t.rejects(journal.append('obj-2', 'a', long, false), { code: 'ENOSPC' }, 'the append fails with ENOSPC');
  const torn = (await readFile(file, 'utf8')).split('\n');
  t.ok((torn.at(-1) ?? '').length > 0, 'part of the line was written');

  await rm(filler);
  await journal.append('obj-3', 'a', record('stored'), true);
  await journal.close();

  const { records, skippedLines } = await readJournal(file);
  t.equal(skippedLines, 1, 'the cut line is skipped');
  t.same([...records.keys()], ['obj-1', 'obj-3'], 'the lines before and after it read back');
  t.same(records.get('obj-3')?.get('a'), record('stored'), 'the line after it starts on a line of its own');
});

t.test('journal flush of a failed write does not linger', { skip: noTmpfs ?? false }, async (t) => {
  const mountPoint = await smallMount(t);

  const file = path.join(mountPoint, 'deliveries.journal');
  const journal = await openJournal(file, { syncDelayMs: 600_000, syncGroupLines: 100 });
  await journal.append('obj-1', 'a', record('queued'), false);
  const filler = path.join(mountPoint, 'filler');
  const { bavail, bsize } = await statfs(mountPoint);
  await writeFile(filler, Buffer.alloc(bavail * bsize));

  const long: DeliveryRecord = { ...record('stored'), lastError: 'x'.repeat(6_000) };
  const failed = journal.append('obj-2', 'a', long, true);
  journal.flush();
  await t.rejects(failed, { code: 'ENOSPC' }, 'the flushed line fails with ENOSPC');
  await rm(filler);

  let synced = false;
  const later = journal.append('obj-3', 'a', record('stored'), true).then(() => {
    synced = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.notOk(synced, 'a line after the failed flush waits for its group');
  t.equal(journal.stats().syncs, 0);
  await journal.close();
  await later;
});
