import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { eventPayloadSchema, type EventPayload } from '../../src/telemetry/payloads.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { startMosquitto, startMosquittoOnPort } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';
import { startStorescp } from '../pacs/peers.js';
import { pressPedal } from './daemon-harness.js';
import { observe } from './helpers.js';

const OUTAGE_MS = 30_000;

t.test('events raised during a 30 s broker outage arrive exactly once', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-outage-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  // The broker keeps sessions on disk, so the observer misses nothing while both are down.
  const persistence = path.join(directory, 'broker');
  await mkdir(persistence);
  let broker = await startMosquitto({ persistenceDirectory: persistence });
  t.teardown(() => broker.stop());
  const dicomPort = await freePort();
  const received = path.join(directory, 'received');
  await mkdir(received);
  const storescp = await startStorescp({ port: dicomPort, aeTitle: 'STORESCP', outputDirectory: received, args: ['+xa'] });
  t.teardown(() => storescp.stop());
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(() => pty.unplug());

  const observer = await observe(broker, ['endocap-test/test-box/events/#', 'endocap-test/test-box/availability'], { clientId: 'outage-observer', clean: false });
  t.teardown(() => observer.close());
  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    mqttUrl: broker.url,
    mqtt: { reconnect: { initialMs: 500, maxMs: 2_000, multiplier: 2 } },
    destinations: [{ name: 'pacs', host: '127.0.0.1', port: dicomPort, calledAeTitle: 'STORESCP' }],
  });
  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('broker connected');
  // Presses before the footswitch port is open or the first frame is decoded would be lost.
  await daemon.waitForLog('footswitch connected');
  await daemon.waitForLog('video signal acquired');

  const events = (type: string): EventPayload[] => observer.json(`endocap-test/test-box/events/${type}`).map((event) => eventPayloadSchema.parse(event));
  await pressPedal(pty.testPath, 2);
  await observer.waitFor(() => events('object-stored').length === 2, 'two deliveries before the outage', 20_000);

  const outageStart = Date.now();
  await broker.stop();
  await daemon.waitForLog('broker unreachable');
  await pressPedal(pty.testPath, 3);
  await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS / 2));
  await pressPedal(pty.testPath, 3);
  await daemon.waitForLog('object stored', 8);
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, outageStart + OUTAGE_MS - Date.now())));
  broker = await startMosquittoOnPort(broker.port, { persistenceDirectory: persistence });

  await observer.waitFor(() => events('still-captured').length >= 8 && events('object-stored').length >= 8, 'events from the outage', 20_000);
  // Anything sent twice would arrive right behind the first copy.
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  for (const type of ['still-captured', 'object-stored']) {
    const list = events(type);
    t.equal(list.length, 8, `${type}: 2 before and 6 during the outage`);
    t.equal(new Set(list.map((event) => event.objectId)).size, 8, `${type}: each object once`);
    const during = list.filter((event) => Date.parse(event.at) >= outageStart);
    t.equal(during.length, 6, `${type}: 6 raised while the broker was down`);
  }
  const all = observer.messages.filter((message) => message.topic.includes('/events/')).map((message) => eventPayloadSchema.parse(JSON.parse(message.text)));
  t.equal(new Set(all.map((event) => event.eventId)).size, all.length, 'no event id arrived twice');
  const availability = observer.on('endocap-test/test-box/availability');
  t.ok(availability.some((message) => message.text === 'online' && !message.retain && message !== availability[0]), 'availability published again after the outage');
  t.equal(daemon.count('broker connected'), 2);
  t.equal(await daemon.stop(), 0);
});
