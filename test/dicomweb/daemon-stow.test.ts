import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { startDaemon } from '../helpers/daemon-process.js';
import { readAttributes } from '../helpers/dicom-tools.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';
import { startStowServer } from './stow-server.js';

// Runs dist/: build first (npm run build).
t.test('pedal still reaches Orthanc over STOW-RS', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-stow-daemon-'));
  const orthanc = await startOrthanc({ dicomWeb: true });
  // A second destination that rejects every token, for the credentials alarm.
  const locked = await startStowServer(() => ({ status: 401 }));
  const broker = await startMosquitto();
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(async () => {
    await pty.unplug();
    await broker.stop();
    await locked.stop();
    await orthanc.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const messages: Array<{ topic: string; payload: string }> = [];
  const observer = await mqtt.connectAsync(broker.url);
  await observer.subscribeAsync('#');
  observer.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  t.teardown(() => observer.endAsync());

  // Orthanc runs without authentication and ignores the header. The token is planted to check that no output shows it.
  const token = 'planted-token-7f3e9a';
  const tokenFile = path.join(directory, 'token');
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    sections: {
      formatVersion: 2,
      destinations: [
        {
          kind: 'stow-rs',
          name: 'web',
          url: `http://127.0.0.1:${orthanc.httpPort}/dicom-web`,
          auth: { kind: 'bearer', tokenFile },
          retry: { initialMs: 200, maxMs: 2_000 },
        },
        { kind: 'stow-rs', name: 'locked', url: locked.url, auth: { kind: 'bearer', tokenFile }, retry: { initialMs: 200, maxMs: 2_000 } },
      ],
    },
    mqttUrl: broker.url,
  });
  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('video signal acquired');
  await daemon.waitForLog('footswitch connected');

  const pedal = await open(pty.testPath, 'w');
  await pedal.write(Buffer.from([0x31]));
  await new Promise((resolve) => setTimeout(resolve, 60));
  await pedal.write(Buffer.from([0x30]));
  await pedal.close();

  await waitFor(async () => (await orthanc.get<string[]>('/instances')).length >= 1, 30_000, 'an instance in Orthanc');
  await daemon.waitForLog('object stored', 1, 10_000);
  const instances = await orthanc.get<string[]>('/instances');
  t.equal(instances.length, 1, 'one instance for one press');
  const started = daemon.lines.find((line) => line.msg === 'sender started' && line['destination'] === 'web');
  t.equal(started?.['url'], `http://127.0.0.1:${orthanc.httpPort}/dicom-web/studies`, 'the sender posts to <url>/studies');

  await waitFor(
    () => messages.some((message) => message.topic === 'endocap-test/test-box/alarms' && message.payload.includes('"destination-credentials.locked"')),
    10_000,
    'the credentials alarm of the locked destination',
  );
  t.equal(locked.requests[0]?.headers['authorization'], `Bearer ${token}`, 'the token from the file is sent');
  t.notOk(messages.some((message) => message.payload.includes('destination-credentials.web')), 'no credentials alarm for the destination that accepts');

  const file = path.join(directory, 'instance.dcm');
  await writeFile(file, await orthanc.file(instances[0] ?? ''));
  const attributes = await readAttributes(file, ['SOPClassUID', 'Modality', 'PatientName', 'PatientID']);
  t.equal(attributes.SOPClassUID, '1.2.840.10008.5.1.4.1.1.77.1.1', 'a VL Endoscopic Image');
  t.equal(attributes.Modality, 'ES');

  t.equal(await daemon.stop(), 0, 'daemon stops cleanly');
  const everything = `${daemon.output()}\n${messages.map((message) => `${message.topic} ${message.payload}`).join('\n')}`;
  t.notOk(everything.includes(token), 'no log line or MQTT message contains the token');
  for (const value of [attributes.PatientName, attributes.PatientID]) {
    if (value) t.notOk(everything.includes(value), `patient value ${JSON.stringify(value)} appears in no log line or MQTT message`);
  }
});
