import t from 'tap';
import { startMosquitto } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/ports.js';
import { createTelemetry, observe, statusInput } from './helpers.js';

/** Discovery topic form: <prefix>/<component>/<node_id>/<object_id>/config, ids of [a-zA-Z0-9_-]. */
const DISCOVERY_TOPIC = /^homeassistant\/(sensor|binary_sensor)\/([A-Za-z0-9_-]+)\/([A-Za-z0-9_-]+)\/config$/;

/** Resolves the `value_json...` path of a template such as `{{ value_json.video.fps }}` or `value_json.destinations['pacs'].queued`. */
function templateValue(template: string, document: unknown): unknown {
  const match = /value_json((?:\.[A-Za-z_][A-Za-z0-9_]*|\['[^']+'\])+)/.exec(template);
  if (!match?.[1]) throw new Error(`no value_json path in ${template}`);
  let current: unknown = document;
  for (const part of match[1].match(/\.[A-Za-z_][A-Za-z0-9_]*|\['[^']+'\]/g) ?? []) {
    const key = part.startsWith('.') ? part.slice(1) : part.slice(2, -2);
    if (current === null || typeof current !== 'object' || !(key in current)) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

t.test('home assistant discovery announces the box as a device', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker, ['homeassistant/#', 'fleet/#']);
  t.teardown(() => observer.close());
  const telemetry = createTelemetry(broker.url, 'box.ha-1', {
    readStatus: () => statusInput(),
    destinations: ['pacs'],
    mqtt: { homeAssistant: { enabled: true } },
  });
  t.teardown(() => telemetry.stop());
  await telemetry.start();
  await observer.waitFor((messages) => messages.some((message) => message.topic === 'fleet/box.ha-1/status'), 'status');
  const configs = (): typeof observer.messages => observer.messages.filter((message) => message.topic.startsWith('homeassistant/') && message.topic.endsWith('/config'));
  await observer.waitFor(() => configs().length >= 22, 'discovery configs');
  const first = configs();

  const status = observer.json('fleet/box.ha-1/status')[0];
  const alarms = observer.json('fleet/box.ha-1/alarms')[0];
  const uniqueIds = new Set<string>();
  const deviceIds = new Set<string>();
  for (const message of first) {
    const topic = DISCOVERY_TOPIC.exec(message.topic);
    t.ok(topic, `${message.topic} has the discovery topic form`);
    const config = JSON.parse(message.text) as Record<string, unknown> & { device: { identifiers: string[]; name: string; sw_version: string }; value_template: string; state_topic: string };
    t.type(config.unique_id, 'string');
    uniqueIds.add(String(config.unique_id));
    t.type(config.name, 'string');
    t.equal(config.availability_topic, 'fleet/box.ha-1/availability');
    t.equal(config.payload_available, 'online');
    t.equal(config.payload_not_available, 'offline');
    t.ok(config.device.identifiers.length > 0, 'device identifiers');
    deviceIds.add(config.device.identifiers.join(','));
    t.equal(config.device.sw_version, '0.0.0-test');
    const documents: Record<string, unknown> = { 'fleet/box.ha-1/status': status, 'fleet/box.ha-1/alarms': alarms };
    const document = documents[config.state_topic];
    t.ok(document, `${message.topic} reads a retained document of the box`);
    t.not(templateValue(config.value_template, document), undefined, `${message.topic} template path exists in the document`);
    if (topic?.[1] === 'binary_sensor') t.match(config.value_template, /'ON' if .* else 'OFF'/, 'binary sensors render ON or OFF');
  }
  t.equal(uniqueIds.size, first.length, 'unique ids differ');
  t.equal(deviceIds.size, 1, 'every entity belongs to one device');
  t.ok(first.some((message) => message.topic === 'homeassistant/sensor/endocap_box_ha-1/pacs_queued/config'), 'a queue sensor per destination');

  // Home Assistant may start after the box: the configs wait for it as retained messages.
  const late = await observe(broker, 'homeassistant/#');
  t.teardown(() => late.close());
  await late.waitFor((messages) => messages.length >= first.length, 'retained configs');
  t.ok(late.messages.every((message) => message.retain), 'every config is retained');

  // Home Assistant announces its start on its status topic; the box publishes its configs again.
  observer.messages.length = 0;
  await observer.client.publishAsync('homeassistant/status', 'online', { qos: 1 });
  await waitFor(() => configs().length >= first.length, 5_000, 'configs published again');
  t.equal(configs().length, first.length, 'every config published again once');
});
