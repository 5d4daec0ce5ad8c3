import mqtt from 'mqtt';
import t from 'tap';
import { z } from 'zod';
import { EndocapError, ErrorCodes } from '../../src/errors.js';
import { CommandRegistry } from '../../src/telemetry/commands.js';
import { commandResponseSchema, type CommandResponse } from '../../src/telemetry/payloads.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/ports.js';
import { createTelemetry, observe } from './helpers.js';

function registry(): CommandRegistry {
  const commands = new CommandRegistry();
  commands.register('echo-args', {
    description: 'Returns its argument.',
    access: 'monitor',
    args: z.strictObject({ word: z.string() }),
    result: z.object({ word: z.string() }),
    handler: (args) => ({ word: args.word, PatientName: 'DOE^JANE' }),
  });
  commands.register('explode', {
    description: 'Throws.',
    access: 'admin',
    args: z.strictObject({}),
    result: z.object({}),
    handler: () => {
      throw new EndocapError(ErrorCodes.SPOOL_FULL, 'spool is full');
    },
  });
  commands.register('slow', {
    description: 'Never finishes.',
    access: 'monitor',
    args: z.strictObject({}),
    result: z.object({}),
    timeoutMs: 200,
    handler: () => new Promise<Record<string, never>>(() => undefined),
  });
  return commands;
}

t.test('registry validates args and results and never throws', async (t) => {
  const commands = registry();
  t.same(await commands.run('echo-args', { word: 'hi' }), { ok: true, result: { word: 'hi' }, afterResponse: [] }, 'unlisted result keys are dropped');
  t.match(await commands.run('echo-args', { word: 3 }), { ok: false, error: { code: 'COMMAND_INVALID' } });
  t.match(await commands.run('echo-args', { word: 'hi', extra: 1 }), { ok: false, error: { code: 'COMMAND_INVALID' } });
  t.match(await commands.run('explode', {}), { ok: false, error: { code: 'SPOOL_FULL', message: 'spool is full' } });
  t.match(await commands.run('slow', {}), { ok: false, error: { code: 'COMMAND_FAILED', message: /within 200 ms/ } });
  t.match(await commands.run('nope', {}), { ok: false, error: { code: 'COMMAND_UNKNOWN', message: /available: echo-args, explode, slow/ } });
  t.throws(() => commands.register('echo-args', { description: '', access: 'monitor', args: z.strictObject({}), result: z.object({}), handler: () => ({}) }), /already registered/);
  t.throws(() => commands.register('bad/name', { description: '', access: 'monitor', args: z.strictObject({}), result: z.object({}), handler: () => ({}) }), /letters, digits/);
});

t.test('placeholder is replaced by the real command', async (t) => {
  const commands = new CommandRegistry();
  const unavailable = { description: '', access: 'operator' as const, args: z.unknown(), result: z.never(), placeholder: true, handler: () => { throw new EndocapError(ErrorCodes.COMMAND_UNAVAILABLE, 'no worklist'); } };
  commands.register('end-exam', unavailable);
  t.match(await commands.run('end-exam', {}), { ok: false, error: { code: 'COMMAND_UNAVAILABLE' } });
  commands.register('end-exam', { description: 'real', access: 'operator', args: z.strictObject({}), result: z.object({ ended: z.boolean() }), handler: () => ({ ended: true }) });
  commands.register('end-exam', unavailable);
  t.match(await commands.run('end-exam', {}), { ok: true, result: { ended: true } }, 'a later placeholder does not replace the real command');
});

t.test('commands answer over MQTT 5 and MQTT 3.1.1', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const telemetry = createTelemetry(broker.url, 'box-cmd', { commands: registry(), mqtt: { commands: { enabled: true } } });
  t.teardown(() => telemetry.stop());
  await telemetry.start();
  await waitFor(() => telemetry.connected, 5_000, 'telemetry to connect');
  const observer = await observe(broker, ['replies/#', 'fleet/box-cmd/responses/#'], { protocolVersion: 5 });
  t.teardown(() => observer.close());
  // The box subscribes right after connecting; a ping through the default topic shows it is ready.
  await waitFor(async () => {
    await observer.client.publishAsync('fleet/box-cmd/commands/echo-args', '{"args":{"word":"ready"}}');
    await new Promise((resolve) => setTimeout(resolve, 100));
    return observer.messages.length > 0;
  }, 5_000, 'command subscription');
  observer.messages.length = 0;

  const v5 = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
  t.teardown(() => v5.endAsync());
  await v5.publishAsync('fleet/box-cmd/commands/echo-args', JSON.stringify({ args: { word: 'five' } }), {
    qos: 1,
    properties: { responseTopic: 'replies/v5', correlationData: Buffer.from([0xde, 0xad, 0xbe, 0xef]) },
  });
  const v311 = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
  t.teardown(() => v311.endAsync());
  const send = (name: string, payload: string): Promise<unknown> => v311.publishAsync(`fleet/box-cmd/commands/${name}`, payload, { qos: 1 });
  await send('echo-args', JSON.stringify({ args: { word: 'three' }, responseTopic: 'replies/v311', correlationId: 'c-1' }));
  await send('echo-args', '{not json');
  await send('echo-args', JSON.stringify({ args: { word: 1 }, responseTopic: 'replies/v311', correlationId: 'c-2' }));
  await send('echo-args', JSON.stringify({ args: {}, responseTopic: 'replies/#', correlationId: 'c-3' }));
  await send('echo-args', JSON.stringify({ unknownKey: true, responseTopic: 'replies/v311', correlationId: 'c-4' }));
  await send('no-such-command', JSON.stringify({ responseTopic: 'replies/v311', correlationId: 'c-5' }));
  await send('explode', JSON.stringify({ responseTopic: 'replies/v311', correlationId: 'c-6' }));
  await send('echo-args', Buffer.alloc(70_000, 0x20).toString());
  await observer.waitFor((messages) => messages.length >= 8, 'eight responses');
  await new Promise((resolve) => setTimeout(resolve, 300));

  const responses = observer.messages.map((message) => ({ topic: message.topic, properties: message.properties, body: commandResponseSchema.parse(JSON.parse(message.text)) }));
  const byCorrelation = (id: string): CommandResponse | undefined => responses.find((response) => response.body.correlationId === id)?.body;

  const five = responses.find((response) => response.topic === 'replies/v5');
  t.match(five?.body, { ok: true, command: 'echo-args', result: { word: 'five' } }, 'MQTT 5 response topic used');
  t.same(five?.properties?.correlationData, Buffer.from([0xde, 0xad, 0xbe, 0xef]), 'correlation data returned');
  t.match(byCorrelation('c-1'), { ok: true, result: { word: 'three' } }, 'MQTT 3.1.1 fallback: response topic from the payload');
  t.equal(responses.find((response) => response.body.correlationId === 'c-1')?.topic, 'replies/v311');
  t.match(byCorrelation('c-2'), { ok: false, error: { code: 'COMMAND_INVALID' } }, 'invalid args');
  t.match(byCorrelation('c-3'), { ok: false, error: { code: 'COMMAND_INVALID', message: /wildcards/ } }, 'wildcard response topic rejected');
  t.equal(responses.find((response) => response.body.correlationId === 'c-3')?.topic, 'fleet/box-cmd/responses/echo-args', 'answered on the default topic');
  t.match(byCorrelation('c-4'), { ok: false, error: { code: 'COMMAND_INVALID', message: /unknownKey/ } }, 'malformed request');
  t.match(byCorrelation('c-5'), { ok: false, error: { code: 'COMMAND_UNKNOWN' } }, 'unknown command');
  t.match(byCorrelation('c-6'), { ok: false, error: { code: 'SPOOL_FULL' } }, 'handler error');
  const defaults = responses.filter((response) => response.topic === 'fleet/box-cmd/responses/echo-args' && response.body.correlationId === undefined);
  t.same(defaults.map((response) => response.body.error?.code), ['COMMAND_INVALID', 'COMMAND_INVALID'], 'payload that is not JSON and an oversized one answered');
  t.notOk(observer.messages.some((message) => message.text.includes('DOE^JANE')), 'results carry listed keys only');
  t.ok(telemetry.connected, 'still connected after every bad request');
});

t.test('commands are off unless enabled', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const telemetry = createTelemetry(broker.url, 'box-off', { commands: registry() });
  t.teardown(() => telemetry.stop());
  await telemetry.start();
  await waitFor(() => telemetry.connected, 5_000, 'telemetry to connect');
  const observer = await observe(broker, 'fleet/box-off/responses/#');
  t.teardown(() => observer.close());
  await observer.client.publishAsync('fleet/box-off/commands/echo-args', '{"args":{"word":"x"}}', { qos: 1 });
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(observer.messages.length, 0, 'no response without commands.enabled');
});

t.test('retained request is not run', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker, 'replies/#');
  t.teardown(() => observer.close());
  await observer.client.publishAsync('fleet/box-ret/commands/explode', JSON.stringify({ responseTopic: 'replies/retained' }), { qos: 1, retain: true });
  await observer.client.publishAsync('fleet/box-ret/commands/echo-args', JSON.stringify({ args: { word: 'x' }, responseTopic: 'replies/retained' }), { qos: 1, retain: true });

  const telemetry = createTelemetry(broker.url, 'box-ret', { commands: registry(), mqtt: { commands: { enabled: true } } });
  t.teardown(() => telemetry.stop());
  await telemetry.start();
  await waitFor(() => telemetry.connected, 5_000, 'telemetry to connect');
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(observer.messages.length, 0, 'a request kept by the broker does not run again at each connection');
});
