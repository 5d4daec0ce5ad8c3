/**
 * Power cuts under a real filesystem: the spool lives on a FUSE filesystem
 * (test/helpers/powercut_fs.py) that drops, at a cut, every file write not
 * fsynced and every folder change whose folder was not fsynced. A child
 * process adds objects and forwards them with the real Sender to DCMTK
 * storescp on loopback. At a random moment the test kills the child with
 * SIGKILL and cuts the power, then starts the child again, which recovers
 * and goes on. Settings (environment): POWER_CUT_SEED (random by default,
 * printed), POWER_CUT_ROUNDS (default 6).
 *
 * The spool promises that an object is durable once add() resolved, and a
 * delivery result once its call resolved. The Sender emits objectStored only
 * after the stored result was recorded. So after every cut each object the
 * child reported as added must be in the spool, complete, or at storescp.
 * An object reported as stored must not be sent again. Delivery is at least
 * once: the Sender goes on sending while up to unrecordedLimit results wait to
 * be recorded, so a cut can make the next run send again those, the one
 * being handed over and the one whose response was on its way.
 */
import { mkdir, open, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { splitPart10 } from '../../src/pacs/part10.js';
import { unrecordedLimit } from '../../src/pacs/sender.js';
import { syncDirectory, writeFileDurably } from '../../src/spool/durable-file.js';
import { testWithPowerCutFs } from '../helpers/powercut-fs.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { UID_ROOT, makeObject } from './fixtures/objects.js';
import { runPowerCutChild, spooledObjects, startCountingStorescp } from './fixtures/power-cut-run.js';

const rounds = Number(process.env.POWER_CUT_ROUNDS ?? 6);
const seed = Number(process.env.POWER_CUT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const OBJECTS_PER_ROUND = 12;

await testWithPowerCutFs(t, 'power-cut filesystem forgets unsynced changes', async (t, fs) => {
  const at = (name: string): string => path.join(fs.mountpoint, name);

  // These come first, because a folder fsync makes every earlier change in the folder durable.
  await writeFileDurably(at('durable.txt'), 'kept');
  await writeFileDurably(at('before.txt'), 'renamed');
  // Written and not synced, under a synced name.
  await writeFile(at('unsynced.bin'), 'lost at the cut');
  await syncDirectory(fs.mountpoint);
  // Renamed without syncing the folder.
  await rename(at('before.txt'), at('after.txt'));
  // Written and synced, under a name that is not synced.
  const handle = await open(at('unnamed.bin'), 'w');
  await handle.writeFile('synced data under an unsynced name');
  await handle.sync();
  await handle.close();
  t.equal(await readFile(at('unsynced.bin'), 'utf8'), 'lost at the cut', 'unsynced data readable before the cut');

  await fs.cut();

  t.equal((await stat(at('unsynced.bin'))).size, 0, 'unsynced data gone, the synced name stays');
  await t.rejects(stat(at('unnamed.bin')), { code: 'ENOENT' }, 'file under an unsynced name gone');
  t.equal(await readFile(at('before.txt'), 'utf8'), 'renamed', 'rename without folder fsync undone');
  await t.rejects(stat(at('after.txt')), { code: 'ENOENT' }, 'new name of the undone rename gone');
  t.equal(await readFile(at('durable.txt'), 'utf8'), 'kept', 'writeFileDurably survives');
});

await testWithPowerCutFs(t, 'torn power cut keeps prefixes of unsynced writes', async (t, fs) => {
  const file = path.join(fs.mountpoint, 'journal');
  const synced = Buffer.alloc(1_000, 'a');
  const appends = Array.from({ length: 20 }, (_, index) => Buffer.alloc(100, 0x41 + index));
  const written = Buffer.concat([synced, ...appends]);
  const lengths = new Set<number>();
  let zeroFilled = 0;
  let unexpected = 0;

  for (let tornSeed = 1; tornSeed <= 20; tornSeed += 1) {
    await writeFileDurably(file, synced);
    const handle = await open(file, 'a');
    for (const chunk of appends) await handle.write(chunk);
    await handle.close();
    await fs.cut(tornSeed);

    const content = await readFile(file);
    lengths.add(content.length);
    if (content.length < synced.length || content.length > written.length) unexpected += 1;
    // Every byte past the synced ones is the byte written there or a zero of a block never written.
    for (let offset = 0; offset < content.length; offset += 1) {
      const byte = content[offset];
      if (offset < synced.length ? byte !== written[offset] : byte !== written[offset] && byte !== 0) {
        unexpected += 1;
        break;
      }
    }
    if (content.subarray(synced.length).includes(0)) zeroFilled += 1;
  }

  t.equal(unexpected, 0, 'every result is the synced data and a prefix of the later writes');
  t.ok([...lengths].some((length) => length > synced.length && length < written.length), `some cuts keep part of the writes (lengths ${[...lengths].join(', ')})`);
  t.ok(zeroFilled > 0, `some cuts leave zero-filled blocks (${zeroFilled} of 20)`);
});

/** Counts the receptions at storescp by SOP Instance UID. Files that do not parse (still being written) are left out. */
async function receptions(directory: string): Promise<{ counts: Map<string, number>; files: Array<{ uid: string; dataset: Buffer }> }> {
  const counts = new Map<string, number>();
  const files: Array<{ uid: string; dataset: Buffer }> = [];
  for (const name of await readdir(directory)) {
    try {
      const { sopInstanceUid, dataset } = splitPart10(await readFile(path.join(directory, name)));
      counts.set(sopInstanceUid, (counts.get(sopInstanceUid) ?? 0) + 1);
      files.push({ uid: sopInstanceUid, dataset });
    } catch {
      continue;
    }
  }
  return { counts, files };
}

await testWithPowerCutFs(t, 'spool keeps its promises across power cuts', async (t, fs) => {
  const random = seededRandom(seed);
  t.comment(`seed ${seed}, ${rounds} power cuts, unrecordedLimit ${unrecordedLimit}`);
  const started = Date.now();
  const { port, received } = await startCountingStorescp(t);

  // The spool folder exists and is synced before the first run, as the installed service's state folder is.
  const spoolDirectory = path.join(fs.mountpoint, 'spool');
  await mkdir(spoolDirectory);
  await syncDirectory(fs.mountpoint);
  const objectsDirectory = path.join(spoolDirectory, 'objects');

  const uidById = new Map<string, string>();
  const promisedAdds = new Set<string>();
  /** Receptions of each UID when its stored result was reported, read after the round. */
  const receptionsWhenStored = new Map<string, number>();
  const knownPrefixes: string[] = [];
  let tornCuts = 0;

  for (let round = 1; round <= rounds; round += 1) {
    const uidPrefix = `${UID_ROOT}.81.${round}`;
    knownPrefixes.push(`${uidPrefix}.`);
    // Half the kills land within 300 ms of the open (recovery, first sends), the
    // rest within 1.5 s of the first add, so that they meet adds and sends.
    const afterAdds = random() >= 0.5;
    const killAfterMs = afterAdds ? random() * 1_500 : random() * 300;
    let firstAddMs: number | undefined;
    const result = await runPowerCutChild(spoolDirectory, port, uidPrefix, OBJECTS_PER_ROUND, (run, sinceOpenMs) => {
      if (!afterAdds) return sinceOpenMs >= killAfterMs;
      if (run.added.size === 0) return false;
      firstAddMs ??= sinceOpenMs;
      return sinceOpenMs - firstAddMs >= killAfterMs;
    });
    const tornSeed = random() < 0.5 ? Math.floor(random() * 2 ** 31) : undefined;
    await fs.cut(tornSeed);
    if (tornSeed !== undefined) tornCuts += 1;

    for (const [id, uid] of result.added) {
      uidById.set(id, uid);
      promisedAdds.add(uid);
    }
    const spooled = await spooledObjects(objectsDirectory);
    for (const [id, uid] of spooled.ids) uidById.set(id, uid);
    const { counts } = await receptions(received);
    for (const id of result.stored) {
      const uid = uidById.get(id);
      if (uid !== undefined && !receptionsWhenStored.has(uid)) receptionsWhenStored.set(uid, counts.get(uid) ?? 0);
    }
    const spooledUids = new Set(spooled.ids.values());
    const lost = [...promisedAdds].filter((uid) => !spooledUids.has(uid) && !counts.has(uid));
    const when = `${Math.round(killAfterMs)} ms after ${afterAdds ? 'the first add' : 'the open'}`;
    t.comment(`cut ${round}${tornSeed === undefined ? '' : ` (torn, seed ${tornSeed})`} ${when}: ${result.added.size} added, ${result.stored.size} stored, ${spooled.ids.size} in the spool`);
    t.same(result.unreadableObjects, [], `run ${round}: spool opened with every object file readable`);
    t.same(spooled.corrupt, [], `cut ${round}: every object file in the spool is complete`);
    t.same(lost, [], `cut ${round}: every added object is in the spool or at storescp`);
  }

  const last = await runPowerCutChild(spoolDirectory, port, `${UID_ROOT}.81.last`, 0, (result) => result.drained);
  for (const [id, uid] of last.added) uidById.set(id, uid);
  t.same(last.unreadableObjects, [], 'last run: spool opened with every object file readable');
  const { counts, files } = await receptions(received);

  const missing = [...promisedAdds].filter((uid) => !counts.has(uid));
  const unknown = [...counts.keys()].filter((uid) => !knownPrefixes.some((prefix) => uid.startsWith(prefix)));
  const corrupt = files.filter(({ uid, dataset }) => !splitPart10(makeObject(uid).part10).dataset.equals(dataset)).map(({ uid }) => uid);
  const sentAfterStored = [...receptionsWhenStored].filter(([uid, count]) => (counts.get(uid) ?? 0) > count).map(([uid]) => uid);
  const extra = files.length - counts.size;
  t.same(missing, [], 'every added object arrived at storescp');
  t.same(unknown, [], 'no unknown SOP Instance UID arrived');
  t.same(corrupt, [], 'every received data set equals the added one');
  t.same(sentAfterStored, [], 'no object sent again after its stored result was reported');
  t.ok(extra <= rounds * (unrecordedLimit + 2), `${extra} re-sends for ${rounds} power cuts (at most ${unrecordedLimit + 2} each)`);
  t.ok(promisedAdds.size > 0, `${promisedAdds.size} adds resolved in total`);

  const stats = await fs.stats();
  const seconds = Math.round((Date.now() - started) / 1000);
  t.comment(`summary ${JSON.stringify({ seed, cuts: rounds, tornCuts, added: promisedAdds.size, received: files.length, resends: extra, seconds, fs: stats })}`);
});
