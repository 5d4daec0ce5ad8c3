import { EventEmitter } from 'node:events';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { Backoff } from '../backoff.js';
import type { Logger } from '../log.js';
import type { MqttConfig } from '../profile/schema.js';
import { readCredentials, readTlsFiles } from './credentials.js';
import { ConnectionHistory } from './flapping.js';

/** MQTT 5 reason code of a DISCONNECT sent because another connection took the client id (MQTT 5 section 3.14.2.1). */
const SESSION_TAKEN_OVER = 0x8e;
/** MQTT 3.1.1 CONNACK return code: the broker does not support the protocol level (MQTT 3.1.1 section 3.2.2.3). */
const UNACCEPTABLE_PROTOCOL_VERSION = 1;
/** A connection that lasted this long resets the backoff; shorter ones (a broker dropping the box) keep it growing, in ms. */
const STABLE_CONNECTION_MS = 10_000;

export interface MqttConnectionOptions {
  config: MqttConfig;
  clientId: string;
  will: { topic: string; payload: Buffer; qos: 0 | 1; retain: boolean };
  log: Logger;
}

interface MqttConnectionEvents {
  /** A connection was established; `count` is 1 for the first one. */
  connected: [{ count: number }];
  disconnected: [];
  /** The broker closed the connection because another client connected with the same client id. */
  takenOver: [];
}

/**
 * One MQTT connection with a Last Will, reconnecting with exponential backoff
 * and jitter. Credentials and TLS files are read once at start; their content
 * is never logged.
 */
export class MqttConnection extends EventEmitter<MqttConnectionEvents> {
  readonly history = new ConnectionHistory();
  private readonly options: MqttConnectionOptions;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private mqttClient: MqttClient | undefined;

  constructor(options: MqttConnectionOptions) {
    super();
    this.options = options;
    this.log = options.log;
    this.backoff = new Backoff(options.config.reconnect);
  }

  get client(): MqttClient | undefined {
    return this.mqttClient;
  }

  get connected(): boolean {
    return this.mqttClient?.connected ?? false;
  }

  /** Protocol level of the connection: 5, or 4 for MQTT 3.1.1. */
  get protocolVersion(): number {
    return this.mqttClient?.options.protocolVersion ?? this.options.config.protocolVersion;
  }

  /** Replaces the Last Will sent with the next connection attempt (Sparkplug changes it on each connect). */
  setWill(payload: Buffer): void {
    const will = this.mqttClient?.options.will;
    if (will) will.payload = payload;
    this.options.will.payload = payload;
  }

  /** Reads credential and TLS files, then starts connecting in the background; never waits for the broker. */
  async start(): Promise<void> {
    const { config, clientId } = this.options;
    const clientOptions: IClientOptions = {
      clientId,
      clean: true,
      protocolVersion: config.protocolVersion,
      keepalive: config.keepaliveSeconds,
      connectTimeout: 10_000,
      reconnectPeriod: config.reconnect.initialMs,
      queueQoSZero: false,
      // mqtt.js 5 stops retrying after a refused CONNACK (bad credentials, broker busy, protocol level).
      // A box in the field keeps trying with backoff, so it comes back once the broker or its ACL is fixed.
      reconnectOnConnackError: true,
      will: { ...this.options.will },
      rejectUnauthorized: true,
    };
    if (config.credentialsFile) {
      const credentials = await readCredentials(config.credentialsFile);
      clientOptions.username = credentials.username;
      clientOptions.password = credentials.password;
    }
    if (config.tls) Object.assign(clientOptions, await readTlsFiles(config.tls));

    const url = redactUrl(config.url);
    const client = mqtt.connect(config.url, clientOptions);
    this.mqttClient = client;

    let connectedAt: number | undefined;
    client.on('connect', () => {
      connectedAt = Date.now();
      this.history.recordConnect();
      this.log.info({ url, clientId, protocolVersion: client.options.protocolVersion, connects: this.history.connectCount }, 'broker connected');
      this.emit('connected', { count: this.history.connectCount });
    });
    client.on('close', () => {
      if (connectedAt !== undefined && Date.now() - connectedAt >= STABLE_CONNECTION_MS) this.backoff.reset();
      connectedAt = undefined;
      client.options.reconnectPeriod = this.backoff.next();
    });
    client.on('offline', () => {
      this.log.warn({ url, clientId, retryInMs: client.options.reconnectPeriod }, 'broker unreachable');
      this.emit('disconnected');
    });
    client.on('disconnect', (packet) => {
      if (packet.reasonCode === SESSION_TAKEN_OVER) {
        this.log.error({ url, clientId }, 'broker closed the connection because another client connected with this client id');
        this.emit('takenOver');
      } else {
        this.log.warn({ url, reasonCode: packet.reasonCode }, 'broker closed the connection');
      }
    });
    client.on('error', (error) => {
      const code = (error as { code?: unknown }).code;
      if (code === UNACCEPTABLE_PROTOCOL_VERSION && client.options.protocolVersion === 5) {
        this.log.warn({ url }, 'broker rejected MQTT 5, retrying with MQTT 3.1.1');
        client.options.protocolVersion = 4;
        return;
      }
      this.log.warn({ url, err: { message: error.message, code } }, 'broker connection failed');
    });
  }

  /** Publishes `final` messages if connected, then disconnects; bounded by `timeoutMs`. */
  async stop(final: Array<{ topic: string; payload: string | Buffer; retain: boolean }>, timeoutMs: number): Promise<void> {
    const client = this.mqttClient;
    if (!client) return;
    this.mqttClient = undefined;
    if (client.connected) {
      try {
        await withTimeout(Promise.all(final.map((message) => client.publishAsync(message.topic, message.payload, { qos: 1, retain: message.retain }))), timeoutMs);
      } catch (error) {
        this.log.warn({ err: { message: (error as Error).message } }, 'last messages before disconnecting not sent');
      }
    }
    try {
      await withTimeout(client.endAsync(false), timeoutMs);
    } catch {
      client.end(true);
    }
  }
}

/** Removes a password from a broker URL before it is logged. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
