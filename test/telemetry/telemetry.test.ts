import mqtt from 'mqtt';
import { pino } from 'pino';
import t from 'tap';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { startMosquitto, type MosquittoPeer } from '../helpers/mosquitto.js';
import { freePort, waitFor } from '../helpers/ports.js';

const log = pino({ level: 'silent' });

function telemetryFor(url: string, boxId: string): Telemetry {
  return new Telemetry({
    config: { url, topicPrefix: 'fleet', statusIntervalMs: 60_000, reconnect: { initialMs: 100, maxMs: 500, multiplier: 2 } },
    boxId,
    clientId: `endocap-${boxId}`,
    softwareVersion: '0.0.0-test',
    log,
  });
}

async function observe(broker: MosquittoPeer): Promise<{ messages: Array<{ topic: string; payload: string; retain: boolean }>; close: () => Promise<void> }> {
  const messages: Array<{ topic: string; payload: string; retain: boolean }> = [];
  const client = await mqtt.connectAsync(broker.url);
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload: payload.toString(), retain: packet.retain }));
  await client.subscribeAsync('fleet/#');
  return { messages, close: () => client.endAsync() };
}

t.test('telemetry publishes availability and status', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const telemetry = telemetryFor(broker.url, 'box-a');
  telemetry.start();
  telemetry.updateStatus({ videoSignal: true, videoWidth: 1920, videoHeight: 1080, videoFps: 59.94, footswitchConnected: true, queueDepth: 3, setAside: 0 });
  await waitFor(() => telemetry.connected, 5_000, 'telemetry to connect');
  await telemetry.stop();

  // A late subscriber sees the retained values.
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  await waitFor(() => observer.messages.length >= 2, 5_000, 'retained messages');
  const availability = observer.messages.find((message) => message.topic === 'fleet/box-a/availability');
  t.equal(availability?.payload, 'offline', 'clean stop leaves offline');
  t.equal(availability?.retain, true);
  const status = JSON.parse(observer.messages.find((message) => message.topic === 'fleet/box-a/status')?.payload ?? '{}') as Record<string, unknown>;
  t.equal(status.schemaVersion, 1);
  t.equal(status.queueDepth, 3);
  t.equal(status.videoFps, 59.9);
  t.equal(status.videoSignal, true);
});

t.test('last will marks a dead box offline', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  const telemetry = telemetryFor(broker.url, 'box-b');
  telemetry.start();
  await waitFor(() => observer.messages.some((message) => message.topic === 'fleet/box-b/availability' && message.payload === 'online'), 5_000, 'online');

  // Cut the TCP connection without DISCONNECT, as a power cut or SIGKILL does.
  const client = (telemetry as unknown as { client: mqtt.MqttClient }).client;
  client.options.reconnectPeriod = 0;
  client.stream.destroy();
  await waitFor(() => observer.messages.some((message) => message.topic === 'fleet/box-b/availability' && message.payload === 'offline'), 10_000, 'will message');
  const availability = observer.messages.filter((message) => message.topic === 'fleet/box-b/availability').map((message) => message.payload);
  t.same(availability, ['online', 'offline'], 'broker published the will after the connection dropped');
  client.end(true);
});

t.test('events raised while broker is down are sent once', async (t) => {
  const port = await freePort();
  const telemetry = telemetryFor(`mqtt://127.0.0.1:${port}`, 'box-c');
  telemetry.start();
  for (let index = 0; index < 250; index += 1) telemetry.publishEvent({ type: 'still-captured', objectId: `obj-${index}`, bytes: index });
  t.equal(telemetry.connected, false);

  // Start a broker on the port the box is already trying.
  const { startMosquittoOnPort } = await import('../helpers/mosquitto.js');
  const broker = await startMosquittoOnPort(port);
  t.teardown(() => broker.stop());
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  await waitFor(() => observer.messages.filter((message) => message.topic === 'fleet/box-c/events/still-captured').length >= 200, 15_000, 'queued events');
  await new Promise((resolve) => setTimeout(resolve, 500));
  const events = observer.messages.filter((message) => message.topic === 'fleet/box-c/events/still-captured').map((message) => JSON.parse(message.payload) as { objectId: string });
  t.equal(events.length, 200, 'bounded at 200, oldest dropped');
  t.equal(events[0]?.objectId, 'obj-50');
  t.equal(events.at(-1)?.objectId, 'obj-249');
  await telemetry.stop();
});

t.test('event payload carries only listed fields', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker);
  t.teardown(() => observer.close());
  const telemetry = telemetryFor(broker.url, 'box-d');
  telemetry.start();
  await waitFor(() => telemetry.connected, 5_000, 'connect');
  const planted = { type: 'object-stored', objectId: 'obj-1', destination: 'pacs', PatientName: 'DOE^JANE' } as Parameters<Telemetry['publishEvent']>[0];
  telemetry.publishEvent(planted);
  await waitFor(() => observer.messages.some((message) => message.topic === 'fleet/box-d/events/object-stored'), 5_000, 'event');
  const payload = observer.messages.find((message) => message.topic === 'fleet/box-d/events/object-stored')?.payload ?? '';
  t.notMatch(payload, /DOE\^JANE/);
  t.match(JSON.parse(payload), { schemaVersion: 1, boxId: 'box-d', type: 'object-stored', objectId: 'obj-1', destination: 'pacs' });
  await telemetry.stop();
});
