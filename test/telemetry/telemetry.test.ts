import t from 'tap';
import { alarmsPayloadSchema, eventPayloadSchema, statusPayloadSchema } from '../../src/telemetry/payloads.js';
import type { StatusInput } from '../../src/telemetry/status-document.js';
import type { Telemetry } from '../../src/telemetry/telemetry.js';
import { startMosquitto, startMosquittoOnPort } from '../helpers/mosquitto.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { createTelemetry, observe, statusInput } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('telemetry publishes availability, status and alarms retained', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const telemetry = createTelemetry(broker.url, 'box-a', { readStatus: () => statusInput() });
  await telemetry.start();
  telemetry.statusChanged();
  await waitFor(() => telemetry.connected, 5_000, 'telemetry to connect');
  telemetry.alarms.raise('video-signal-lost', 'critical', 'no video signal: timeout');
  await sleep(300);
  await telemetry.stop();

  // A late subscriber sees the retained values.
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  await observer.waitFor((messages) => messages.length >= 3, 'retained messages');
  const availability = observer.on('fleet/box-a/availability');
  t.equal(availability[0]?.text, 'offline', 'clean stop leaves offline');
  t.equal(availability[0]?.retain, true);

  const status = statusPayloadSchema.parse(observer.json('fleet/box-a/status')[0]);
  t.equal(status.schemaVersion, 2);
  t.equal(status.boxId, 'box-a');
  t.equal(status.video.fps, 59.9, 'frame rate rounded to 0.1');
  t.equal(status.destinations.pacs?.queued, 3);
  t.equal(status.destinations.pacs?.linkUp, true);
  t.ok((status.destinations.pacs?.oldestUndeliveredSeconds ?? 0) >= 5, 'oldest undelivered age in seconds');
  t.same(status.alarms, ['video-signal-lost']);
  t.equal(status.barcodeReader.configured, false);
  t.ok(status.system.memoryTotalBytes > 0);

  const alarms = alarmsPayloadSchema.parse(observer.json('fleet/box-a/alarms')[0]);
  t.same(alarms.alarms.map((alarm) => [alarm.id, alarm.severity]), [['video-signal-lost', 'critical']]);
});

t.test('last will marks a dead box offline', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  const telemetry = createTelemetry(broker.url, 'box-b');
  await telemetry.start();
  await observer.waitFor((messages) => messages.some((message) => message.topic === 'fleet/box-b/availability' && message.text === 'online'), 'online');

  // Cut the TCP connection without DISCONNECT, as a power cut or SIGKILL does.
  const client = (telemetry as unknown as { connection: { client: import('mqtt').MqttClient } }).connection.client;
  client.options.reconnectPeriod = 0;
  client.stream.destroy();
  await observer.waitFor((messages) => messages.some((message) => message.topic === 'fleet/box-b/availability' && message.text === 'offline'), 'will message');
  t.same(observer.on('fleet/box-b/availability').map((message) => message.text), ['online', 'offline'], 'broker published the will after the connection dropped');
  client.end(true);
});

t.test('status changes are merged and unchanged status is not sent again', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker, 'fleet/box-m/status');
  t.teardown(() => observer.close());
  let input: StatusInput = statusInput();
  const telemetry = createTelemetry(broker.url, 'box-m', { readStatus: () => input });
  t.teardown(() => telemetry.stop());
  await telemetry.start();
  await observer.waitFor((messages) => messages.length === 1, 'status at connect');

  for (let queued = 4; queued < 54; queued += 1) {
    input = statusInput({ spool: { ...input.spool, destinations: { pacs: { queued, sending: 0, setAside: 0, awaitingCommitment: 0, bytesQueued: queued * 1_000, oldestQueuedAt: null } } } });
    telemetry.statusChanged();
  }
  await observer.waitFor((messages) => messages.some((message) => (JSON.parse(message.text) as { destinations: { pacs: { queued: number } } }).destinations.pacs.queued === 53), 'final status');
  t.ok(observer.messages.length <= 3, `50 changes merged into ${observer.messages.length - 1} message(s)`);

  const before = observer.messages.length;
  // Only measurements move: frame rate and ages wait for the heartbeat.
  input = { ...input, video: { ...input.video, fps: 58.2 } };
  telemetry.statusChanged();
  await sleep(400);
  t.equal(observer.messages.length, before, 'a frame-rate change alone is not published at once');
});

t.test('events raised while broker is down are sent once, oldest dropped', async (t) => {
  const port = await freePort();
  const telemetry = createTelemetry(`mqtt://127.0.0.1:${port}`, 'box-c');
  await telemetry.start();
  for (let index = 0; index < 250; index += 1) telemetry.publishEvent({ type: 'still-captured', objectId: `obj-${index}`, bytes: index });
  t.equal(telemetry.connected, false);

  // Start a broker on the port the box is already trying; the observer is there first.
  const broker = await startMosquittoOnPort(port);
  t.teardown(() => broker.stop());
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  await observer.waitFor((messages) => messages.filter((message) => message.topic === 'fleet/box-c/events/still-captured').length >= 200, 'queued events', 15_000);
  await sleep(500);
  const events = observer.json('fleet/box-c/events/still-captured').map((event) => eventPayloadSchema.parse(event));
  t.equal(events.length, 200, 'bounded at 200');
  t.equal(events[0]?.objectId, 'obj-50', 'oldest dropped first');
  t.equal(events.at(-1)?.objectId, 'obj-249');
  t.equal(new Set(events.map((event) => event.eventId)).size, 200, 'event ids are unique');
  await telemetry.stop();
});

t.test('event payload carries only listed fields', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  const telemetry = createTelemetry(broker.url, 'box-d');
  t.teardown(() => telemetry.stop());
  await telemetry.start();
  await waitFor(() => telemetry.connected, 5_000, 'connect');
  const planted = { type: 'object-stored', objectId: 'obj-1', destination: 'pacs', PatientName: 'DOE^JANE' } as Parameters<Telemetry['publishEvent']>[0];
  telemetry.publishEvent(planted);
  telemetry.publishEvent({ type: 'store-failed', objectId: 'obj-2', reason: 'x'.repeat(5_000) });
  await observer.waitFor((messages) => messages.some((message) => message.topic === 'fleet/box-d/events/store-failed'), 'events');
  const stored = observer.on('fleet/box-d/events/object-stored')[0]?.text ?? '';
  t.notMatch(stored, /DOE\^JANE/);
  t.match(JSON.parse(stored), { schemaVersion: 2, boxId: 'box-d', type: 'object-stored', objectId: 'obj-1', destination: 'pacs' });
  const failed = eventPayloadSchema.parse(observer.json('fleet/box-d/events/store-failed')[0]);
  t.equal(failed.reason?.length, 200, 'long reasons are cut');
});

t.test('alarms stay until cleared', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  const telemetry = createTelemetry(broker.url, 'box-e');
  t.teardown(() => telemetry.stop());
  await telemetry.start();
  await waitFor(() => telemetry.connected, 5_000, 'connect');

  telemetry.alarms.raise('destination-unreachable.pacs', 'critical', 'pacs: connection refused');
  telemetry.alarms.raise('destination-unreachable.pacs', 'critical', 'pacs: connection refused');
  telemetry.alarms.raise('objects-set-aside.pacs', 'warning', '1 object(s) set aside');
  telemetry.alarms.clear('destination-unreachable.pacs');
  telemetry.alarms.clear('never-raised');
  await observer.waitFor((messages) => messages.filter((message) => message.topic === 'fleet/box-e/alarms').length >= 4, 'alarm documents');

  t.same(observer.json<{ id: string }>('fleet/box-e/events/alarm-raised').map((event) => event.id), ['destination-unreachable.pacs', 'objects-set-aside.pacs'], 'raising an active alarm again sends nothing');
  t.same(observer.json<{ id: string }>('fleet/box-e/events/alarm-cleared').map((event) => event.id), ['destination-unreachable.pacs']);
  const last = alarmsPayloadSchema.parse(observer.json('fleet/box-e/alarms').at(-1));
  t.same(last.alarms.map((alarm) => alarm.id), ['objects-set-aside.pacs'], 'the retained document lists what is wrong now');
});

t.test('client id used by two boxes is reported as flapping', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const first = createTelemetry(broker.url, 'box-f', { clientId: 'endocap-cloned' });
  const second = createTelemetry(broker.url, 'box-g', { clientId: 'endocap-cloned' });
  t.teardown(async () => {
    await first.stop(500);
    await second.stop(500);
  });
  await first.start();
  await waitFor(() => first.connected, 5_000, 'first box to connect');
  await second.start();
  // Mosquitto 2.0 closes the older connection without an MQTT 5 DISCONNECT, so the boxes see drops, not a takeover reason.
  await waitFor(() => first.alarms.isActive('mqtt-flapping') || second.alarms.isActive('mqtt-flapping'), 15_000, 'a flapping alarm');
  t.pass('the boxes pushing each other off are reported as flapping');
});
