import { mkdir, mkdtemp, open, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { readObjectMetadata } from '../../src/dicom/object-metadata.js';
import { createLogger } from '../../src/log.js';
import { Spool } from '../../src/spool/spool.js';
import type { SpoolEntry } from '../../src/spool/types.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';
import { startStorescp } from '../pacs/peers.js';
import { UID_ROOT, makeObject, plain } from '../spool/fixtures/objects.js';

async function press(testPath: string): Promise<void> {
  const pedal = await open(testPath, 'w');
  try {
    await pedal.write(Buffer.from([0x31]));
    await new Promise((resolve) => setTimeout(resolve, 60));
    await pedal.write(Buffer.from([0x30]));
  } finally {
    await pedal.close();
  }
}

async function folderUids(folder: string, suffix = ''): Promise<string[]> {
  const uids: string[] = [];
  for (const name of await readdir(folder)) {
    if (name.endsWith(suffix)) uids.push(readObjectMetadata(await readFile(path.join(folder, name))).sopInstanceUid);
  }
  return uids.sort();
}

t.test('full spool rejects captures until objects are delivered', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-full-'));
  const receivedDirectory = path.join(directory, 'received');
  await mkdir(receivedDirectory);
  const broker = await startMosquitto();
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(async () => {
    await pty.unplug();
    await broker.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const events: Array<{ topic: string; payload: Record<string, unknown> }> = [];
  const observer = await mqtt.connectAsync(broker.url);
  await observer.subscribeAsync('endocap-test/+/events/#');
  observer.on('message', (topic, payload) => events.push({ topic, payload: JSON.parse(payload.toString()) as Record<string, unknown> }));
  t.teardown(() => observer.endAsync());

  // Two objects wait for a PACS that is down; the quota leaves no room for a still.
  const spoolDirectory = path.join(directory, 'spool');
  const seeded = new Spool({ directory: spoolDirectory, destinations: plain('pacs'), log: createLogger('silent') });
  await seeded.open();
  const waiting: SpoolEntry[] = [];
  for (let i = 1; i <= 2; i += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.80.${i}`);
    waiting.push(await seeded.add(part10, meta));
  }
  await seeded.close();
  const maxBytes = waiting.reduce((total, entry) => total + entry.bytes, 0) + 1_000;

  const dicomPort = await freePort();
  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    destinations: [{ name: 'pacs', host: '127.0.0.1', port: dicomPort, calledAeTitle: 'STORESCP', retry: { initialMs: 200, maxMs: 1_000 } }],
    mqttUrl: broker.url,
    spool: { maxBytes, retentionHours: 0 },
  });
  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('footswitch connected');
  await daemon.waitForLog('video signal acquired');
  await daemon.waitForLog('store failed, will retry');

  await press(pty.testPath);
  await daemon.waitForLog('still capture failed');
  const failure = daemon.lines.find((line) => line.msg === 'still capture failed');
  t.equal(failure?.code, 'SPOOL_FULL', 'the capture is rejected as spool full');
  t.equal(daemon.count('spool full, captures rejected'), 1, 'the alarm is logged');
  t.equal(daemon.count('still captured'), 0);
  t.same(await folderUids(path.join(spoolDirectory, 'objects'), '.dcm'), waiting.map((entry) => entry.sopInstanceUid).sort(), 'the waiting objects stay intact');
  for (const [index, entry] of waiting.entries()) {
    t.ok((await readFile(path.join(spoolDirectory, 'objects', `${entry.id}.dcm`))).equals(makeObject(`${UID_ROOT}.80.${index + 1}`).part10), `${entry.id} unchanged`);
  }
  // The unreachable PACS raises its own alarm too; this test looks at the spool's.
  const spoolAlarm = (event: { topic: string; payload: { id?: unknown } }, type: string): boolean => event.topic.endsWith(`/events/${type}`) && event.payload.id === 'spool-full';
  await waitFor(() => events.some((event) => spoolAlarm(event, 'alarm-raised')), 10_000, 'the alarm-raised event');
  const raised = events.find((event) => spoolAlarm(event, 'alarm-raised'))?.payload;
  t.equal(raised?.id, 'spool-full');
  t.equal(raised?.severity, 'critical');
  t.match(raised?.reason, /spool\.maxBytes/);

  const storescp = await startStorescp({ port: dicomPort, aeTitle: 'STORESCP', outputDirectory: receivedDirectory, args: ['+xa'] });
  t.teardown(() => storescp.stop());
  await waitFor(async () => (await readdir(receivedDirectory)).length === 2, 30_000, 'the waiting objects to reach storescp');
  t.same(await folderUids(receivedDirectory), waiting.map((entry) => entry.sopInstanceUid).sort(), 'delivered once the PACS is back');
  await daemon.waitForLog('spool has room again');
  await waitFor(() => events.some((event) => spoolAlarm(event, 'alarm-cleared')), 10_000, 'the alarm-cleared event');
  t.pass('the spool-full alarm is cleared');

  await press(pty.testPath);
  await daemon.waitForLog('still captured');
  await waitFor(async () => (await readdir(receivedDirectory)).length === 3, 30_000, 'the new still to reach storescp');
  t.pass('captures work again');
  t.equal(await daemon.stop(), 0);
});
