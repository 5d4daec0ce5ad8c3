import { mkdtemp, open, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { startDaemon } from '../helpers/daemon-process.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';

const PRESSES = 2;

t.test('daemon commits pedal stills at orthanc', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-commitment-daemon-'));
  const listenerPort = await freePort();
  // writeTestProfile's station AE title; Orthanc reports to the modality with that title.
  const stationAeTitle = 'ENDOCAP_TEST';
  const orthanc = await startOrthanc({ modalities: { endocap: { AET: stationAeTitle, Host: '127.0.0.1', Port: listenerPort, AllowStorageCommitment: true } } });
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
    destinations: [
      {
        name: 'orthanc',
        host: '127.0.0.1',
        port: orthanc.dicomPort,
        calledAeTitle: orthanc.aeTitle,
        storageCommitment: { enabled: true, requestDelayMs: 200, resultTimeoutMs: 60_000, reportWaitMs: 0 },
      },
    ],
    commitmentListener: { host: '127.0.0.1', port: listenerPort, allowedPeers: [{ aeTitle: orthanc.aeTitle, host: '127.0.0.1' }] },
    mqttUrl: broker.url,
  });
  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('commitment listener started');
  await daemon.waitForLog('footswitch connected');
  await daemon.waitForLog('video signal acquired');

  const pedal = await open(pty.testPath, 'w');
  for (let press = 0; press < PRESSES; press += 1) {
    await pedal.write(Buffer.from([0x31]));
    await new Promise((resolve) => setTimeout(resolve, 60));
    await pedal.write(Buffer.from([0x30]));
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await pedal.close();

  await daemon.waitForLog('object committed', PRESSES, 30_000);
  // Retention is 0, so an object leaves the spool once committed, not when stored.
  await daemon.waitForLog('object delivered to every destination and removed', PRESSES, 10_000);
  const first = (message: string): number => daemon.lines.findIndex((line) => line.msg === message);
  t.ok(first('object stored') < first('commitment requested'), 'commitment is requested after the store');
  t.ok(first('commitment requested') < first('object delivered to every destination and removed'), 'the object is removed only once committed');
  const requests = daemon.count('commitment requested');
  const results = daemon.lines.filter((line) => line.msg === 'commitment result applied' && line.origin === 'listener').length;
  t.equal(results, requests, 'every request was answered on a new association to the listener');
  t.same(await readdir(path.join(directory, 'spool', 'commitments')), [], 'no transaction left pending');

  await waitFor(() => messages.filter((message) => message.topic.endsWith('/events/object-committed')).length === PRESSES, 10_000, 'object-committed events');
  const event = JSON.parse(messages.find((message) => message.topic.endsWith('/events/object-committed'))?.payload ?? '{}') as Record<string, unknown>;
  t.equal(event.type, 'object-committed');
  t.equal(event.destination, 'orthanc');

  t.equal(await daemon.stop(), 0, 'daemon stops cleanly on SIGTERM');
  const stopSteps = daemon.lines.filter((line) => line.msg === 'commitment requester stopped' || line.msg === 'commitment listener stopped' || line.msg === 'sender stopped').map((line) => line.msg);
  t.same(stopSteps, ['commitment requester stopped', 'commitment listener stopped', 'sender stopped'], 'commitment stops before the senders');
});
