/**
 * Crash soak: the real daemon forwards a pre-filled spool to two DCMTK
 * storescp peers and is killed with SIGKILL at random moments, then runs to
 * the end. Settings (environment): CRASH_SOAK_KILLS (default 12),
 * CRASH_SOAK_OBJECTS (default 200), CRASH_SOAK_SEED (random by default, printed),
 * CRASH_SOAK_SUMMARY (a file to write the summary to, as JSON).
 *
 * Delivery is at least once, not exactly once. The spool records a delivery
 * durably only after the PACS returned success, so a kill between that
 * response and the record makes the next run send the object again. DICOM has no
 * transaction that spans both sides, and a PACS treats a second C-STORE of the
 * same SOP Instance UID as a repeat (Orthanc keeps one instance, storescp
 * with +uf writes a second file). What is asserted, at each destination:
 * - every object arrived at least once, and nothing with an unknown UID arrived;
 * - every received file is complete: its data set equals the spooled one byte
 *   for byte, and dcmdump parses it;
 * - an object arrived more than once only if its delivery was recorded as
 *   'sending' (a batch on an association) in the spool when a kill happened
 *   (in its state file or the delivery journal);
 * - each kill caused at most unrecordedLimit + 2 extra receptions: the results
 *   the Sender had not recorded yet, the one it was handing over, and the one
 *   whose response was still on its way.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { buildVlEndoscopicImage } from '../../src/dicom/vl-endoscopic.js';
import { splitPart10 } from '../../src/pacs/part10.js';
import { unrecordedLimit } from '../../src/pacs/sender.js';
import { readJournal } from '../../src/spool/delivery-journal.js';
import { startDaemon, type DaemonProcess } from '../helpers/daemon-process.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { seededRandom } from '../helpers/seeded-random.js';
import { startStorescp, type RunningPeer } from '../pacs/peers.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');

const kills = Number(process.env.CRASH_SOAK_KILLS ?? 12);
const objectCount = Number(process.env.CRASH_SOAK_OBJECTS ?? 200);
const seed = Number(process.env.CRASH_SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
const uidRoot = '1.2.826.0.1.3680043.10.1437.77';
const destinationNames = ['pacs-a', 'pacs-b'];

/** Writes `objectCount` VL Endoscopic stills and returns their data sets by SOP Instance UID. */
async function makeObjects(directory: string): Promise<{ files: string[]; datasets: Map<string, Buffer> }> {
  const jpegs: Buffer[] = [];
  for (let index = 0; index < 4; index += 1) {
    const file = path.join(directory, `frame-${index}.jpg`);
    await run('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `testsrc2=size=640x480,noise=alls=${10 + index}:allf=t`, '-frames:v', '1', '-q:v', '3', '-pix_fmt', 'yuvj422p', file]);
    jpegs.push(await readFile(file));
  }
  const now = new Date();
  const station = {
    aeTitle: 'ENDOCAP_TEST', stationName: 'SOAK', institutionName: '', departmentName: '', uidRoot,
    deviceSerialNumber: 'soak', softwareVersion: '0.0.0',
  };
  const study = { studyInstanceUid: `${uidRoot}.1`, studyId: '1', accessionNumber: '', studyDate: now, patientName: 'SOAK^TEST', patientId: 'SOAK' };
  const series = { seriesInstanceUid: `${uidRoot}.2`, seriesNumber: 1, seriesDate: now };
  const files: string[] = [];
  const datasets = new Map<string, Buffer>();
  for (let index = 1; index <= objectCount; index += 1) {
    const sopInstanceUid = `${uidRoot}.3.${index}`;
    const part10 = buildVlEndoscopicImage({
      jpeg: jpegs[index % jpegs.length] ?? Buffer.alloc(0), width: 640, height: 480, acquiredAt: now, sopInstanceUid,
      station, study, series, instanceNumber: index,
    });
    const file = path.join(directory, `still-${index}.dcm`);
    await writeFile(file, part10);
    files.push(file);
    datasets.set(sopInstanceUid, splitPart10(part10).dataset);
  }
  return { files, datasets };
}

/**
 * SOP Instance UIDs whose delivery to each destination is recorded as
 * 'sending' on disk: in the object's state file, or in a later record of the
 * spool's delivery journal, which overrides the state file.
 */
async function sendingInSpool(spoolDirectory: string, datasets: Map<string, Buffer>): Promise<Map<string, Set<string>>> {
  const folder = path.join(spoolDirectory, 'objects');
  const { records: journal } = await readJournal(path.join(spoolDirectory, 'deliveries.journal'));
  const sending = new Map(destinationNames.map((name) => [name, new Set<string>()]));
  for (const name of await readdir(folder).catch(() => [])) {
    if (!name.endsWith('.json')) continue;
    let entry: { id?: string; sopInstanceUid?: string; deliveries?: Record<string, { state?: string }> };
    try {
      entry = JSON.parse(await readFile(path.join(folder, name), 'utf8')) as typeof entry;
    } catch {
      continue;
    }
    if (!entry.sopInstanceUid || !datasets.has(entry.sopInstanceUid)) continue;
    const deliveries: Record<string, { state?: string }> = { ...entry.deliveries };
    for (const [destination, record] of journal.get(entry.id ?? '') ?? []) deliveries[destination] = record;
    for (const [destination, record] of Object.entries(deliveries)) {
      if (record.state === 'sending') sending.get(destination)?.add(entry.sopInstanceUid);
    }
  }
  return sending;
}

async function spooledObjects(spoolDirectory: string): Promise<number> {
  const names = await readdir(path.join(spoolDirectory, 'objects')).catch(() => []);
  return names.filter((name) => name.endsWith('.dcm')).length;
}

t.test('SIGKILL soak delivers every object to both destinations', async (t) => {
  const random = seededRandom(seed);
  t.comment(`seed ${seed}, ${kills} kills, ${objectCount} objects`);
  const started = Date.now();
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-soak-'));
  const peers: RunningPeer[] = [];
  t.teardown(async () => {
    for (const peer of peers) await peer.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const objectDirectory = path.join(directory, 'objects');
  await mkdir(objectDirectory);
  const { files, datasets } = await makeObjects(objectDirectory);

  const received = new Map<string, string>();
  const destinations = [];
  for (const name of destinationNames) {
    const output = path.join(directory, `received-${name}`);
    await mkdir(output);
    const port = await freePort();
    // +uf gives every reception its own file, so a second C-STORE of a UID shows; +B keeps the bytes as received.
    peers.push(await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: output, args: ['+xa', '+B', '+uf'] }));
    received.set(name, output);
    destinations.push({ name, host: '127.0.0.1', port, calledAeTitle: 'STORESCP', retry: { initialMs: 100, maxMs: 500 } });
  }
  const profile = await writeTestProfile({ directory, destinations, graph: 'color=c=black:s=64x64:r=5,format=yuv420p,realtime' });
  const spoolDirectory = path.join(directory, 'spool');

  await run(process.execPath, [path.join(root, 'dist/cli/main.js'), 'queue', 'import', ...files, '--profile', profile], { maxBuffer: 16 * 1024 * 1024 });
  t.equal(await spooledObjects(spoolDirectory), objectCount, 'queue import filled the spool');

  const inFlightAtKill = new Map(destinationNames.map((name) => [name, new Set<string>()]));
  const modes = { starting: 0, delivering: 0 };
  let killed = 0;
  for (let round = 1; round <= kills; round += 1) {
    if ((await spooledObjects(spoolDirectory)) === 0) break;
    const daemon: DaemonProcess = startDaemon(profile);
    t.teardown(() => daemon.kill());
    if (random() < 0.25) {
      // While it starts: spool recovery, video open, the first association.
      modes.starting += 1;
      await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 900)));
    } else {
      modes.delivering += 1;
      const storedBeforeKill = 1 + Math.floor(random() * 8);
      await daemon.waitForLog('object stored', storedBeforeKill, 30_000).catch(() => undefined);
    }
    await daemon.kill();
    killed += 1;
    const sending = await sendingInSpool(spoolDirectory, datasets);
    for (const [name, uids] of sending) for (const uid of uids) inFlightAtKill.get(name)?.add(uid);
  }
  t.ok(killed >= Math.min(kills, 10), `${killed} SIGKILLs (${modes.starting} while starting, ${modes.delivering} while delivering)`);

  const last = startDaemon(profile);
  t.teardown(() => last.kill());
  // SIGTERM before start-up ends gets Node's default action, so the stop waits for it.
  await last.waitForLog('daemon started');
  await waitFor(async () => (await spooledObjects(spoolDirectory)) === 0, 90_000, 'the spool to drain');
  t.equal(await last.stop(), 0, 'the last run exits cleanly');

  const summary: Record<string, unknown> = { seed, kills: killed, objects: objectCount, ...modes };
  for (const name of destinationNames) {
    const output = received.get(name) ?? '';
    const names = await readdir(output);
    const counts = new Map<string, number>();
    let corrupt = 0;
    for (const file of names) {
      const part10 = await readFile(path.join(output, file));
      const { sopInstanceUid, dataset } = splitPart10(part10);
      counts.set(sopInstanceUid, (counts.get(sopInstanceUid) ?? 0) + 1);
      if (!datasets.get(sopInstanceUid)?.equals(dataset)) corrupt += 1;
    }
    const unknown = [...counts.keys()].filter((uid) => !datasets.has(uid));
    const missing = [...datasets.keys()].filter((uid) => !counts.has(uid));
    const duplicated = [...counts].filter(([, count]) => count > 1).map(([uid]) => uid);
    const unexplained = duplicated.filter((uid) => !inFlightAtKill.get(name)?.has(uid));
    t.same(missing, [], `${name}: every object arrived`);
    t.same(unknown, [], `${name}: no unknown SOP Instance UID`);
    t.equal(corrupt, 0, `${name}: every received data set equals the spooled one`);
    t.same(unexplained, [], `${name}: duplicates only of objects in flight at a kill`);
    const extra = names.length - counts.size;
    t.ok(extra <= killed * (unrecordedLimit + 2), `${name}: ${extra} extra receptions for ${killed} kills`);
    const dump = await run('dcmdump', ['-q', '+P', '0008,0018', ...names.map((file) => path.join(output, file))], { maxBuffer: 64 * 1024 * 1024 }).then(
      () => 0,
      (error: { code?: number }) => error.code ?? 1,
    );
    t.equal(dump, 0, `${name}: dcmdump parses every received file`);
    summary[name] = { files: names.length, unique: counts.size, duplicates: extra, inFlightAtKills: inFlightAtKill.get(name)?.size ?? 0 };
  }
  summary.seconds = Math.round((Date.now() - started) / 1000);
  t.comment(`summary ${JSON.stringify(summary)}`);
  if (process.env.CRASH_SOAK_SUMMARY) await writeFile(process.env.CRASH_SOAK_SUMMARY, `${JSON.stringify(summary, null, 2)}\n`);
});
