import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { startDaemon } from '../helpers/daemon-process.js';
import { pixelLevels, readAttributes, validateIod } from '../helpers/dicom-tools.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';

const PRESSES = 20;

t.test('twenty pedal presses reach Orthanc', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-e2e-'));
  const orthanc = await startOrthanc();
  const broker = await startMosquitto();
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(async () => {
    await pty.unplug();
    await broker.stop();
    await orthanc.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const messages: Array<{ topic: string; payload: string }> = [];
  const observer = await mqtt.connectAsync(broker.url);
  await observer.subscribeAsync('#');
  observer.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  t.teardown(() => observer.endAsync());

  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    destinations: [{ name: 'orthanc', host: '127.0.0.1', port: orthanc.dicomPort, calledAeTitle: orthanc.aeTitle }],
    mqttUrl: broker.url,
  });
  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('video signal acquired');
  await daemon.waitForLog('footswitch connected');

  const pedal = await open(pty.testPath, 'w');
  for (let press = 0; press < PRESSES; press += 1) {
    await pedal.write(Buffer.from([0x31]));
    await new Promise((resolve) => setTimeout(resolve, 60));
    await pedal.write(Buffer.from([0x30]));
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await pedal.close();

  await waitFor(async () => (await orthanc.get<string[]>('/instances')).length >= PRESSES, 60_000, `${PRESSES} instances in Orthanc`);
  await daemon.waitForLog('object stored', PRESSES, 30_000);
  const instances = await orthanc.get<string[]>('/instances');
  t.equal(instances.length, PRESSES, 'exactly one instance per press');
  t.equal(daemon.count('still captured'), PRESSES, 'one capture per press');

  const patientValues = new Set<string>();
  for (const [index, instanceId] of instances.entries()) {
    const file = path.join(directory, `instance-${index}.dcm`);
    await writeFile(file, await orthanc.file(instanceId));
    const report = await validateIod(file);
    t.same(report.errors, [], `dciodvfy finds no errors in instance ${index}`);
    const attributes = await readAttributes(file, ['PatientName', 'PatientID', 'SOPClassUID', 'Modality']);
    t.equal(attributes.SOPClassUID, '1.2.840.10008.5.1.4.1.1.77.1.1');
    t.equal(attributes.Modality, 'ES');
    patientValues.add(attributes.PatientName ?? '');
    patientValues.add(attributes.PatientID ?? '');
  }

  const first = path.join(directory, 'instance-0.dcm');
  const levels = await pixelLevels(first, [
    [20, 20, 300, 460],
    [340, 20, 620, 460],
  ]);
  t.same(levels.shape, [480, 640, 3]);
  t.ok((levels.regions[0]?.max ?? 255) <= 3, `black stays black: ${JSON.stringify(levels.regions[0])}`);
  t.ok((levels.regions[1]?.min ?? 0) >= 252, `white stays white: ${JSON.stringify(levels.regions[1])}`);

  await waitFor(() => messages.some((message) => message.topic.endsWith('/events/object-stored')), 10_000, 'object-stored event');
  t.ok(messages.some((message) => message.topic === 'endocap-test/test-box/availability' && message.payload === 'online'), 'availability online');
  t.equal(messages.filter((message) => message.topic.endsWith('/events/still-captured')).length, PRESSES, 'one capture event per press');

  t.equal(await daemon.stop(), 0, 'daemon stops cleanly on SIGTERM');
  await waitFor(() => messages.some((message) => message.payload === 'offline'), 5_000, 'offline availability');

  const everything = `${daemon.output()}\n${messages.map((message) => `${message.topic} ${message.payload}`).join('\n')}`;
  for (const value of patientValues) {
    if (!value) continue;
    t.notOk(everything.includes(value), `patient value ${JSON.stringify(value)} appears in no log line or MQTT message`);
  }
});
