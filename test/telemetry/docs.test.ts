import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import type { z } from 'zod';
import { alarmsPayloadSchema, commandRequestSchema, commandResponseSchema, eventPayloadSchema, statusPayloadSchema } from '../../src/telemetry/payloads.js';
import { discoveryMessages } from '../../src/telemetry/home-assistant.js';
import { telemetryTopics } from '../../src/telemetry/topics.js';

const docFile = path.resolve(import.meta.dirname, '../../docs/mqtt.md');

/** Returns the fenced blocks of the page whose info string is `json <kind>`. */
function examples(markdown: string, kind: string): unknown[] {
  const pattern = new RegExp('```json ' + kind + '\\n([\\s\\S]*?)\\n```', 'g');
  return [...markdown.matchAll(pattern)].map((match) => JSON.parse(match[1] ?? '') as unknown);
}

t.test('every example in docs/mqtt.md matches its schema', async (t) => {
  const markdown = await readFile(docFile, 'utf8');
  const schemas: Array<[string, z.ZodType]> = [
    ['status', statusPayloadSchema],
    ['alarms', alarmsPayloadSchema],
    ['event', eventPayloadSchema],
    ['request', commandRequestSchema],
    ['response', commandResponseSchema],
  ];
  for (const [kind, schema] of schemas) {
    const found = examples(markdown, kind);
    t.ok(found.length > 0, `the page has a ${kind} example`);
    for (const example of found) {
      const parsed = schema.safeParse(example);
      t.ok(parsed.success, `${kind} example is valid: ${parsed.success ? '' : parsed.error.message}`);
      // A key the schema does not list would be dropped before publishing, so the page would show a field that is never sent.
      t.same(parsed.data, example, `${kind} example has only listed keys`);
    }
  }
});

t.test('home assistant example is what the box publishes', async (t) => {
  const markdown = await readFile(docFile, 'utf8');
  const [example] = examples(markdown, 'ha-config');
  const messages = discoveryMessages({ discoveryPrefix: 'homeassistant', boxId: 'box-3f2a9c01d4e5', softwareVersion: '0.1.0', topics: telemetryTopics('endocap', 'box-3f2a9c01d4e5'), destinations: ['pacs'] });
  const published = messages.find((message) => message.topic === 'homeassistant/sensor/endocap_box-3f2a9c01d4e5/pacs_queued/config');
  t.ok(markdown.includes('`homeassistant/sensor/endocap_box-3f2a9c01d4e5/pacs_queued/config`'), 'the page names the topic');
  t.same(published?.config, example);
});
