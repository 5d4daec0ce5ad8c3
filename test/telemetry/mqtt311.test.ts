import t from 'tap';
import { DemoMqttBroker } from '../../src/demo/mqtt-broker.js';
import { waitFor } from '../helpers/ports.js';
import { createTelemetry, observe } from './helpers.js';

t.test('broker without MQTT 5 gets MQTT 3.1.1', async (t) => {
  // aedes, the demo's broker, supports MQTT 3.1.1 only and refuses MQTT 5 in its CONNACK.
  const broker = new DemoMqttBroker();
  const port = await broker.start();
  t.teardown(() => broker.stop());
  const url = `mqtt://127.0.0.1:${port}`;
  const observer = await observe(url, 'fleet/#');
  t.teardown(() => observer.close());
  const telemetry = createTelemetry(url, 'box-311');
  t.teardown(() => telemetry.stop(500));
  await telemetry.start();
  await waitFor(() => telemetry.connected, 10_000, 'connection with MQTT 3.1.1');
  await observer.waitFor((messages) => messages.some((message) => message.topic === 'fleet/box-311/availability' && message.text === 'online'), 'online');
  t.pass('connected after the MQTT 5 refusal');
});
