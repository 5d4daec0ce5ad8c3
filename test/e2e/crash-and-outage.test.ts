import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { readObjectMetadata } from '../../src/dicom/object-metadata.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { startOrthanc, type OrthancPeer } from '../helpers/orthanc.js';
import { waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';

async function orthancUids(orthanc: OrthancPeer): Promise<string[]> {
  const instances = await orthanc.get<Array<{ MainDicomTags: { SOPInstanceUID: string } }>>('/instances?expand');
  return instances.map((instance) => instance.MainDicomTags.SOPInstanceUID).sort();
}

/**
 * SOP Instance UIDs of the complete objects in the spool; temporary files are
 * not objects. A running daemon may delete a delivered object between the
 * listing and the read: that object is no longer spooled.
 */
async function spooledUids(spoolDirectory: string): Promise<string[]> {
  const folder = path.join(spoolDirectory, 'objects');
  const names = (await readdir(folder)).filter((name) => name.endsWith('.dcm'));
  const uids: string[] = [];
  for (const name of names) {
    let part10: Buffer;
    try {
      part10 = await readFile(path.join(folder, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    uids.push(readObjectMetadata(part10).sopInstanceUid);
  }
  return uids.sort();
}

/** Presses the pedal `count` times; `whileDown` runs while the pedal is held, 5 ms after the down byte. */
async function press(testPath: string, count: number, intervalMs: number, whileDown?: (index: number) => Promise<void>): Promise<void> {
  const pedal = await open(testPath, 'w');
  try {
    for (let index = 0; index < count; index += 1) {
      await pedal.write(Buffer.from([0x31]));
      await new Promise((resolve) => setTimeout(resolve, 5));
      await whileDown?.(index);
      await new Promise((resolve) => setTimeout(resolve, 35));
      await pedal.write(Buffer.from([0x30]));
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  } finally {
    await pedal.close();
  }
}

t.test('SIGKILL during a burst loses no captured still', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-crash-'));
  const orthanc = await startOrthanc();
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(async () => {
    await pty.unplug();
    await orthanc.stop();
    await rm(directory, { recursive: true, force: true });
  });
  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    destinations: [{ name: 'orthanc', host: '127.0.0.1', port: orthanc.dicomPort, calledAeTitle: orthanc.aeTitle }],
  });

  // Two rounds: each kills the daemon while a still is being captured (the
  // debounce is 20 ms, the capture takes tens of ms) and others are being sent.
  const expected = new Set<string>();
  for (const [round, killDelayMs] of [[1, 25], [2, 45]] as const) {
    const daemon = startDaemon(profile);
    t.teardown(() => daemon.kill());
    await daemon.waitForLog('video signal acquired');
    await daemon.waitForLog('footswitch connected');
    await press(pty.testPath, 16, 90, async (index) => {
      if (index !== 12) return;
      await new Promise((resolve) => setTimeout(resolve, killDelayMs));
      await daemon.kill();
    });
    const captured = daemon.count('still captured');
    const inOrthanc = await orthancUids(orthanc);
    const inSpool = await spooledUids(path.join(directory, 'spool'));
    const known = new Set([...inOrthanc, ...inSpool]);
    t.ok(captured > 0, `round ${round}: stills captured before the kill: ${captured}`);
    t.ok(known.size >= expected.size + captured, `round ${round}: every logged capture is in Orthanc or the spool`);
    for (const uid of expected) t.ok(known.has(uid), `round ${round}: earlier object ${uid} is still known`);
    for (const uid of known) expected.add(uid);
  }

  const second = startDaemon(profile);
  t.teardown(() => second.kill());
  await second.waitForLog('spool opened');
  await waitFor(async () => (await spooledUids(path.join(directory, 'spool'))).length === 0, 60_000, 'the spool to drain');

  const delivered = await orthancUids(orthanc);
  t.same(delivered, [...expected].sort(), 'Orthanc holds exactly the captured objects, with their original UIDs');
  const leftovers = (await readdir(path.join(directory, 'spool', 'objects'))).filter((name) => name.endsWith('.tmp'));
  t.same(leftovers, [], 'recovery removed partial files');
  t.equal(await second.stop(), 0);
});

t.test('PACS outage keeps stills queued until it returns', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-outage-'));
  const orthanc = await startOrthanc();
  await orthanc.kill();
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(async () => {
    await pty.unplug();
    await orthanc.stop();
    await rm(directory, { recursive: true, force: true });
  });
  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    destinations: [{ name: 'orthanc', host: '127.0.0.1', port: orthanc.dicomPort, calledAeTitle: orthanc.aeTitle, retry: { initialMs: 200, maxMs: 1_000 } }],
  });
  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('footswitch connected');
  await daemon.waitForLog('video signal acquired');

  await press(pty.testPath, 3, 200);
  await daemon.waitForLog('still captured', 3);
  await daemon.waitForLog('store failed, will retry');
  const failure = daemon.lines.find((line) => line.msg === 'store failed, will retry');
  t.match(String(failure?.reason), /refused/i, 'the reason names the refused connection');
  t.equal((await spooledUids(path.join(directory, 'spool'))).length, 3, 'all three stills wait in the spool');

  await orthanc.restart();
  await waitFor(async () => (await orthancUids(orthanc)).length === 3, 30_000, 'three instances after the PACS returns');
  await waitFor(async () => (await spooledUids(path.join(directory, 'spool'))).length === 0, 10_000, 'the spool to drain');
  t.pass('delivered after the outage');
  t.equal(await daemon.stop(), 0);
});
