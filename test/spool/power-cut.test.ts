/**
 * Power cut, modelled on the delivery journal. No device-mapper target or
 * second machine is available here to cut the power under a real
 * filesystem, so this test builds what a power cut can leave instead. The
 * journal is append-only between compactions, and every result is
 * fdatasynced before its call resolves. After a power cut at any instant the
 * file is therefore a prefix of the final one, at least as long as what was
 * synced. It may end in a torn line, or in zeros where blocks were allocated
 * but not written. Each such state is reopened: nothing may be lost, no
 * result may be invented, and only objects whose result fell past the cut
 * are sent again.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { Spool } from '../../src/spool/spool.js';
import type { DeliveryState } from '../../src/spool/types.js';
import { UID_ROOT, makeObject, plain } from './fixtures/objects.js';

const OBJECTS = 12;
const DESTINATIONS = ['a', 'b'];
const JOURNAL = 'deliveries.journal';

interface JournalLine {
  id: string;
  destination: string;
  record: { state: DeliveryState; attempts: number };
}

/**
 * Runs deliveries as two senders would: batches marked sending, results
 * recorded one by one while the next ones start. Some fail and are queued
 * again, one is set aside. Returns the objects' bytes by id.
 */
async function deliver(directory: string): Promise<Map<string, Buffer>> {
  const spool = new Spool({ directory, destinations: plain(...DESTINATIONS), log: createLogger('silent'), retentionHours: 24 });
  await spool.open();
  const added = new Map<string, Buffer>();
  for (let index = 0; index < OBJECTS; index += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.80.${index}`);
    added.set((await spool.add(part10, meta)).id, part10);
  }
  const ids = [...added.keys()];
  await Promise.all(
    DESTINATIONS.map(async (destination, senderIndex) => {
      for (let first = 0; first < ids.length; first += 4) {
        const batch = ids.slice(first, first + 4);
        await spool.markSending(batch, destination);
        const results: Array<Promise<void>> = [];
        for (const [offset, id] of batch.entries()) {
          const position = first + offset;
          if (position === 5 && senderIndex === 0) results.push(spool.markSetAside(id, destination, 'status 0xC000'));
          else if (position % 5 === 2) results.push(spool.markFailed(id, destination, 'association aborted'));
          else results.push(spool.markStored(id, destination, 0));
          await new Promise((resolve) => setImmediate(resolve));
        }
        await Promise.all(results);
      }
    }),
  );
  await spool.close();
  return added;
}

/** Parses the complete lines of a journal prefix, as the test reads them: JSON objects ending in a newline. */
function completeLines(prefix: Buffer): JournalLine[] {
  const text = prefix.toString('utf8');
  const lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n');
  return lines.filter((line) => line !== '').map((line) => JSON.parse(line) as JournalLine);
}

/** What a reopened spool must show for each object and destination: the last record in the prefix, with sending read back as queued. */
function expectedStates(lines: JournalLine[], ids: string[]): Map<string, DeliveryState> {
  const states = new Map<string, DeliveryState>();
  for (const id of ids) for (const destination of DESTINATIONS) states.set(`${id} ${destination}`, 'queued');
  for (const { id, destination, record } of lines) states.set(`${id} ${destination}`, record.state === 'sending' ? 'queued' : record.state);
  return states;
}

/** Cut points: every line end, the middle of every third line, and the start. */
function cutPoints(journal: Buffer): Array<{ at: number; torn: boolean }> {
  const points: Array<{ at: number; torn: boolean }> = [{ at: 0, torn: false }];
  let start = 0;
  let line = 0;
  for (let index = journal.indexOf(0x0a); index >= 0; index = journal.indexOf(0x0a, index + 1)) {
    if (line % 3 === 1) points.push({ at: start + Math.floor((index - start) / 2), torn: true });
    points.push({ at: index + 1, torn: false });
    start = index + 1;
    line += 1;
  }
  return points;
}

t.test('spool reopens after a power cut at any point of its delivery journal', async (t) => {
  const work = await mkdtemp(path.join(tmpdir(), 'endocap-power-cut-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const original = path.join(work, 'original');
  const added = await deliver(original);
  const ids = [...added.keys()];
  const journal = await readFile(path.join(original, JOURNAL));
  const finalLines = completeLines(journal);
  t.ok(finalLines.some((line) => line.record.state === 'set-aside'), 'the run set an object aside');
  t.ok(finalLines.some((line) => line.record.state === 'queued' && line.record.attempts > 0), 'the run recorded failed attempts');

  const points = cutPoints(journal);
  let checked = 0;
  for (const { at, torn } of points) {
    // Blocks allocated but not written read back as zeros on some filesystems.
    for (const zeros of torn ? [0] : [0, 512]) {
      const copy = path.join(work, `cut-${at}-${zeros}`);
      await cp(original, copy, { recursive: true });
      await writeFile(path.join(copy, JOURNAL), Buffer.concat([journal.subarray(0, at), Buffer.alloc(zeros)]));
      const expected = expectedStates(completeLines(journal.subarray(0, at)), ids);
      const where = `cut at byte ${at} of ${journal.length}${torn ? ' (torn line)' : ''}${zeros > 0 ? ` + ${zeros} zero bytes` : ''}`;

      const spool = new Spool({ directory: copy, destinations: plain(...DESTINATIONS), log: createLogger('silent'), retentionHours: 24 });
      const report = await spool.open();
      const problems: string[] = [];
      if (report.journalLinesSkipped !== (torn || zeros > 0 ? 1 : 0)) problems.push(`${report.journalLinesSkipped} journal lines skipped`);
      const entries = spool.list();
      if (entries.length !== OBJECTS) problems.push(`${entries.length} objects after reopening`);
      for (const entry of entries) {
        const bytes = await spool.read(entry.id);
        if (!bytes.equals(added.get(entry.id) ?? Buffer.alloc(0))) problems.push(`${entry.id}: bytes differ`);
        for (const destination of DESTINATIONS) {
          const state = entry.deliveries[destination]?.state;
          const expectedState = expected.get(`${entry.id} ${destination}`);
          if (state !== expectedState) problems.push(`${entry.id} at ${destination}: ${state}, expected ${expectedState}`);
        }
      }
      // The journal must take new records after the cut, and the next reopening must find them.
      const first = entries[0];
      if (first !== undefined) await spool.markStored(first.id, 'a', 0);
      await spool.close();
      if (first !== undefined) {
        const again = new Spool({ directory: copy, destinations: plain(...DESTINATIONS), log: createLogger('silent'), retentionHours: 24 });
        await again.open();
        const state = again.get(first.id)?.deliveries.a?.state;
        if (state !== 'stored') problems.push(`record written after the cut reads back as ${state}`);
        await again.close();
      }
      t.same(problems, [], where);
      await rm(copy, { recursive: true, force: true });
      checked += 1;
    }
  }
  t.ok(checked > 2 * finalLines.length, `${checked} journal states checked for ${finalLines.length} lines`);
});
