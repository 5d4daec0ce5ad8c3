/**
 * Power cuts at the moment the spool keeps a promise. The child blocks its
 * thread right after add() resolved or after the Sender reported a stored
 * result, then the test kills it and cuts the power. Work the spool left to
 * run after the promise (a rename, an fsync, a journal fdatasync) never runs.
 * So a promise kept too early fails every time, not only when a random kill
 * lands in a window of a few milliseconds.
 */
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { splitPart10 } from '../../src/pacs/part10.js';
import { syncDirectory } from '../../src/spool/durable-file.js';
import { testWithPowerCutFs } from '../helpers/powercut-fs.js';
import { freePort } from '../helpers/ports.js';
import { UID_ROOT } from './fixtures/objects.js';
import { runPowerCutChild, spooledObjects, startCountingStorescp } from './fixtures/power-cut-run.js';

const ROUNDS = 2;

/** Makes the spool folder and flushes it, as the installed service's state folder is. */
async function makeSpoolFolder(mountpoint: string): Promise<string> {
  const spoolDirectory = path.join(mountpoint, 'spool');
  await mkdir(spoolDirectory);
  await syncDirectory(mountpoint);
  return spoolDirectory;
}

/** Counts the files storescp received for each SOP Instance UID. */
async function receptionCounts(directory: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const name of await readdir(directory)) {
    const { sopInstanceUid } = splitPart10(await readFile(path.join(directory, name)));
    counts.set(sopInstanceUid, (counts.get(sopInstanceUid) ?? 0) + 1);
  }
  return counts;
}

await testWithPowerCutFs(t, 'add is durable when it resolves', async (t, fs) => {
  const spoolDirectory = await makeSpoolFolder(fs.mountpoint);
  // Nothing listens on this loopback port, so every object stays in the spool.
  const port = await freePort();
  const added = new Map<string, string>();

  for (let round = 1; round <= ROUNDS; round += 1) {
    const result = await runPowerCutChild(spoolDirectory, port, `${UID_ROOT}.85.${round}`, 3, (run) => run.added.size === 1, { freezeAfter: 'added' });
    await fs.cut();
    for (const [id, uid] of result.added) added.set(id, uid);

    const spooled = await spooledObjects(path.join(spoolDirectory, 'objects'));
    t.same([...spooled.ids].sort(), [...added].sort(), `cut ${round}: every added object is in the spool`);
    t.same(spooled.corrupt, [], `cut ${round}: every object file is complete`);
  }
});

await testWithPowerCutFs(t, 'stored result is durable when reported', async (t, fs) => {
  const { port, received } = await startCountingStorescp(t);
  const spoolDirectory = await makeSpoolFolder(fs.mountpoint);
  const stored = new Map<string, string>();

  for (let round = 1; round <= ROUNDS; round += 1) {
    const result = await runPowerCutChild(spoolDirectory, port, `${UID_ROOT}.86.${round}`, 1, (run) => run.stored.size === 1, { freezeAfter: 'stored' });
    await fs.cut();
    for (const id of result.stored) {
      const uid = result.added.get(id);
      if (uid !== undefined) stored.set(id, uid);
    }
    // The next run recovers the spool and sends whatever it reads as queued.
    await runPowerCutChild(spoolDirectory, port, `${UID_ROOT}.86.${round}.drain`, 0, (run) => run.drained);
    await fs.cut();
  }

  const counts = await receptionCounts(received);
  t.equal(stored.size, ROUNDS, 'one stored result reported per round');
  for (const [id, uid] of stored) t.equal(counts.get(uid), 1, `object ${id} received once after its stored result`);
});
