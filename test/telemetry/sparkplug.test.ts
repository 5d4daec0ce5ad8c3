import type { MqttClient } from 'mqtt';
import sparkplugPayload from 'sparkplug-payload';
import type { UPayload } from 'sparkplug-payload/lib/sparkplugbpayload.js';
import t from 'tap';
import type { StatusInput } from '../../src/telemetry/status-document.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/ports.js';
import { createTelemetry, observe, statusInput } from './helpers.js';

const codec = sparkplugPayload.get('spBv1.0');

function decode(payload: Buffer): UPayload {
  if (!codec) throw new Error('no spBv1.0 codec');
  return codec.decodePayload(payload);
}

/** Sparkplug's 64-bit values decode as Long objects. */
function numberOf(value: unknown): number {
  if (typeof value === 'number') return value;
  if (value && typeof value === 'object' && 'toNumber' in value) return (value as { toNumber(): number }).toNumber();
  throw new Error(`not a number: ${JSON.stringify(value)}`);
}

function metric(payload: UPayload, name: string): { value: unknown; type: string } | undefined {
  const found = payload.metrics?.find((entry) => entry.name === name);
  return found ? { value: found.value, type: found.type } : undefined;
}

t.test('sparkplug node births, reports, rebirths and dies', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker, 'spBv1.0/#');
  t.teardown(() => observer.close());
  let input: StatusInput = statusInput();
  const telemetry = createTelemetry(broker.url, 'box-sp', { readStatus: () => input, mqtt: { sparkplug: { enabled: true, groupId: 'endoscopy' } } });
  await telemetry.start();
  telemetry.statusChanged();

  const births = (): Array<{ payload: UPayload; retain: boolean }> => observer.on('spBv1.0/endoscopy/NBIRTH/box-sp').map((message) => ({ payload: decode(message.payload), retain: message.retain }));
  await observer.waitFor(() => births().length === 1, 'NBIRTH');
  const birth = births()[0];
  t.equal(birth?.retain, false, 'NBIRTH is not retained');
  t.equal(numberOf(birth?.payload.seq), 0, 'NBIRTH has seq 0');
  t.ok(numberOf(birth?.payload.timestamp) > 0, 'NBIRTH has a timestamp');
  const bdSeq = metric(birth?.payload ?? {}, 'bdSeq');
  t.equal(bdSeq?.type, 'UInt64');
  t.equal(numberOf(bdSeq?.value), 0, 'first connection has bdSeq 0');
  t.same(metric(birth?.payload ?? {}, 'Node Control/Rebirth'), { value: false, type: 'Boolean' });
  t.same(metric(birth?.payload ?? {}, 'Video/Signal'), { value: true, type: 'Boolean' });
  t.equal(numberOf(metric(birth?.payload ?? {}, 'Destinations/pacs/Queued')?.value), 3);

  // A change is sent as NDATA with the changed metrics and the next seq.
  input = statusInput({ video: { ...input.video, signal: false } });
  telemetry.statusChanged();
  await observer.waitFor((messages) => messages.some((message) => message.topic === 'spBv1.0/endoscopy/NDATA/box-sp'), 'NDATA');
  const data = decode(observer.on('spBv1.0/endoscopy/NDATA/box-sp')[0]?.payload ?? Buffer.alloc(0));
  t.equal(numberOf(data.seq), 1, 'NDATA follows NBIRTH with seq 1');
  t.same(metric(data, 'Video/Signal'), { value: false, type: 'Boolean' });
  t.notOk(metric(data, 'Destinations/pacs/Queued'), 'unchanged metrics are left out');

  // A host application requests a rebirth.
  if (!codec) throw new Error('no codec');
  const command = codec.encodePayload({ timestamp: Date.now(), metrics: [{ name: 'Node Control/Rebirth', type: 'Boolean', value: true }] });
  await observer.client.publishAsync('spBv1.0/endoscopy/NCMD/box-sp', Buffer.from(command), { qos: 0 });
  await observer.waitFor(() => births().length === 2, 'NBIRTH after rebirth');
  t.equal(numberOf(births()[1]?.payload.seq), 0, 'rebirth starts seq at 0');
  t.equal(numberOf(metric(births()[1]?.payload ?? {}, 'bdSeq')?.value), 0, 'rebirth keeps bdSeq');
  // A command payload that is not Sparkplug is ignored.
  await observer.client.publishAsync('spBv1.0/endoscopy/NCMD/box-sp', 'not protobuf', { qos: 0 });

  // The connection drops without DISCONNECT: the broker publishes the Will, NDEATH with the same bdSeq.
  const sparkplugClient = (telemetry as unknown as { sparkplug: { connection: { client: MqttClient } } }).sparkplug.connection.client;
  sparkplugClient.stream.destroy();
  await observer.waitFor((messages) => messages.some((message) => message.topic === 'spBv1.0/endoscopy/NDEATH/box-sp'), 'NDEATH will');
  const death = decode(observer.on('spBv1.0/endoscopy/NDEATH/box-sp')[0]?.payload ?? Buffer.alloc(0));
  t.equal(numberOf(metric(death, 'bdSeq')?.value), 0, 'NDEATH bdSeq matches the NBIRTH');

  // The node reconnects by itself with the next bdSeq.
  await observer.waitFor(() => births().length === 3, 'NBIRTH after reconnect');
  t.equal(numberOf(metric(births()[2]?.payload ?? {}, 'bdSeq')?.value), 1, 'a new connection has the next bdSeq');

  await telemetry.stop();
  await waitFor(() => observer.on('spBv1.0/endoscopy/NDEATH/box-sp').length === 2, 5_000, 'NDEATH on stop');
  const last = decode(observer.on('spBv1.0/endoscopy/NDEATH/box-sp')[1]?.payload ?? Buffer.alloc(0));
  t.equal(numberOf(metric(last, 'bdSeq')?.value), 1, 'clean stop publishes NDEATH with the current bdSeq');
});
