import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { mqttSchema, type MqttConfig } from '../../src/profile/schema.js';
import type { StatusInput } from '../../src/telemetry/status-document.js';
import { Telemetry, type TelemetryOptions } from '../../src/telemetry/telemetry.js';
import type { MosquittoPeer } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/ports.js';

export const silentLog = pino({ level: 'silent' });

export interface ReceivedMessage {
  topic: string;
  payload: Buffer;
  text: string;
  retain: boolean;
  properties: Record<string, unknown> | undefined;
}

/** A profile's mqtt section with fast reconnects, through the real schema so defaults apply. */
export function mqttConfig(url: string, overrides: Record<string, unknown> = {}): MqttConfig {
  return mqttSchema.parse({ url, topicPrefix: 'fleet', statusIntervalMs: 60_000, reconnect: { initialMs: 100, maxMs: 500, multiplier: 2 }, ...overrides });
}

/** A minimal daemon state for status documents. */
export function statusInput(overrides: Partial<StatusInput> = {}): StatusInput {
  return {
    startedAt: '2026-01-01T00:00:00.000Z',
    profileVersion: '0123456789ab',
    video: { signal: true, width: 1920, height: 1080, pixelFormat: 'yuv420p', fps: 59.94, framesDropped: 0 },
    footswitch: { kind: 'serial', connected: true },
    spool: {
      objects: 3,
      bytes: 3_000,
      retained: 0,
      retainedBytes: 0,
      alarms: [],
      destinations: { pacs: { queued: 3, sending: 0, setAside: 0, awaitingCommitment: 0, bytesQueued: 3_000, oldestQueuedAt: new Date(Date.now() - 5_000).toISOString() } },
    },
    senders: [{ destination: 'pacs', lastResult: 'stored', consecutiveFailures: 0 }],
    links: { pacs: true },
    ...overrides,
  };
}

export function createTelemetry(url: string, boxId: string, options: Partial<TelemetryOptions> & { mqtt?: Record<string, unknown> } = {}): Telemetry {
  const { mqtt: mqttOverrides, ...rest } = options;
  return new Telemetry({
    config: mqttConfig(url, mqttOverrides),
    boxId,
    clientId: `endocap-${boxId}`,
    softwareVersion: '0.0.0-test',
    log: silentLog,
    ...rest,
  });
}

export interface Observer {
  client: MqttClient;
  messages: ReceivedMessage[];
  on(topic: string): ReceivedMessage[];
  json<T = Record<string, unknown>>(topic: string): T[];
  waitFor(check: (messages: ReceivedMessage[]) => boolean, what: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Subscribes a separate client to `filters` and records every message. */
export async function observe(broker: MosquittoPeer | string, filters: string | string[] = 'fleet/#', options: IClientOptions = {}): Promise<Observer> {
  const url = typeof broker === 'string' ? broker : broker.url;
  const messages: ReceivedMessage[] = [];
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 200, ...options });
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload, text: payload.toString(), retain: packet.retain, properties: packet.properties as Record<string, unknown> | undefined });
  });
  await client.subscribeAsync(filters, { qos: 1 });
  const on = (topic: string): ReceivedMessage[] => messages.filter((message) => message.topic === topic);
  return {
    client,
    messages,
    on,
    json: <T>(topic: string) => on(topic).map((message) => JSON.parse(message.text) as T),
    waitFor: (check, what, timeoutMs = 10_000) => waitFor(() => check(messages), timeoutMs, what),
    close: async () => {
      await client.endAsync(true);
    },
  };
}
