import { EventEmitter } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import { Backoff } from '../backoff.js';
import type { Logger } from '../log.js';
import type { MqttConfig } from '../profile/schema.js';

/** Version of every JSON payload published; bumped on incompatible changes. */
export const PAYLOAD_SCHEMA_VERSION = 1;

/** Events kept while the broker is unreachable; older ones are dropped first. */
const MAX_PENDING_EVENTS = 200;

/**
 * Status document published retained. Only the fields listed here are sent,
 * so no patient data can reach the broker through it.
 */
export interface TelemetryStatus {
  videoSignal: boolean;
  videoWidth?: number | undefined;
  videoHeight?: number | undefined;
  videoFps?: number | undefined;
  footswitchConnected: boolean;
  queueDepth: number;
  setAside: number;
  lastError?: string | undefined;
}

/** A telemetry event: internal ids, counts and reasons only. */
export interface TelemetryEvent {
  type: 'still-captured' | 'capture-failed' | 'object-stored' | 'store-failed' | 'object-set-aside' | 'video-signal-lost' | 'video-signal-acquired' | 'footswitch-connected' | 'footswitch-disconnected' | 'alarm-raised' | 'alarm-cleared'
    | 'object-committed' | 'commitment-failed' | 'commitment-unsupported' | 'commitment-supported'
    | 'clip-started' | 'clip-captured' | 'clip-failed';
  /** Alarm id, such as `spool-full`, for alarm events. */
  id?: string;
  severity?: 'critical' | 'warning';
  objectId?: string;
  destination?: string;
  status?: number;
  reason?: string;
  bytes?: number;
  /** Internal clip id and file number, for clip events. */
  clipId?: string;
  part?: number;
}

export interface TelemetryOptions {
  config: MqttConfig;
  boxId: string;
  clientId: string;
  softwareVersion: string;
  log: Logger;
}

interface TelemetryEvents {
  connected: [];
  disconnected: [{ reason: string }];
}

/**
 * MQTT telemetry with a Last Will. Publishing never blocks capture or
 * delivery: when the broker is down, status is merged into the latest value
 * and events wait in a bounded list that is sent once on reconnect.
 */
export class Telemetry extends EventEmitter<TelemetryEvents> {
  private readonly options: TelemetryOptions;
  private readonly log: Logger;
  private client: MqttClient | undefined;
  private readonly backoff: Backoff;
  private heartbeat: NodeJS.Timeout | undefined;
  private status: TelemetryStatus | undefined;
  private lastStatusJson = '';
  private pendingEvents: Array<TelemetryEvent & { at: string }> = [];
  private droppedEvents = 0;

  constructor(options: TelemetryOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'telemetry' });
    this.backoff = new Backoff(options.config.reconnect);
  }

  get topicBase(): string {
    return `${this.options.config.topicPrefix}/${this.options.boxId}`;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Starts connecting in the background; never waits for the broker. */
  start(): void {
    const { config, clientId } = this.options;
    const client = mqtt.connect(config.url, {
      clientId,
      clean: true,
      connectTimeout: 10_000,
      reconnectPeriod: config.reconnect.initialMs,
      queueQoSZero: false,
      will: { topic: `${this.topicBase}/availability`, payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    this.client = client;

    client.on('connect', () => {
      this.backoff.reset();
      client.options.reconnectPeriod = this.options.config.reconnect.initialMs;
      this.log.info({ url: redactUrl(config.url), clientId }, 'broker connected');
      client.publish(`${this.topicBase}/availability`, 'online', { qos: 1, retain: true });
      this.lastStatusJson = '';
      this.publishStatus();
      this.flushEvents();
      this.emit('connected');
    });
    client.on('close', () => {
      client.options.reconnectPeriod = this.backoff.next();
    });
    client.on('offline', () => {
      this.log.warn({ url: redactUrl(config.url), retryInMs: client.options.reconnectPeriod }, 'broker unreachable');
      this.emit('disconnected', { reason: 'offline' });
    });
    client.on('error', (error) => {
      this.log.warn({ url: redactUrl(config.url), err: { message: error.message, code: (error as NodeJS.ErrnoException).code } }, 'broker connection failed');
    });

    this.heartbeat = setInterval(() => {
      this.lastStatusJson = '';
      this.publishStatus();
    }, config.statusIntervalMs);
    this.heartbeat.unref();
  }

  /** Publishes `offline`, then disconnects. Bounded by `timeoutMs`. */
  async stop(timeoutMs = 2_000): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    if (client.connected) {
      await withTimeout(client.publishAsync(`${this.topicBase}/availability`, 'offline', { qos: 1, retain: true }), timeoutMs).catch((error: unknown) => {
        this.log.warn({ err: error }, 'offline message not sent');
      });
    }
    await withTimeout(client.endAsync(false), timeoutMs).catch(() => client.end(true));
  }

  /** Records the latest status; it is published at once when it changed. */
  updateStatus(status: TelemetryStatus): void {
    this.status = status;
    this.publishStatus();
  }

  /** Publishes an event now, or keeps it (bounded) until the broker is back. */
  publishEvent(event: TelemetryEvent): void {
    const stamped = { ...pickEvent(event), at: new Date().toISOString() };
    if (this.client?.connected) {
      this.send(stamped);
      return;
    }
    this.pendingEvents.push(stamped);
    if (this.pendingEvents.length > MAX_PENDING_EVENTS) {
      this.pendingEvents.shift();
      this.droppedEvents += 1;
    }
  }

  private flushEvents(): void {
    const events = this.pendingEvents;
    this.pendingEvents = [];
    if (this.droppedEvents > 0) {
      this.log.warn({ dropped: this.droppedEvents }, 'events dropped while broker was unreachable');
      this.droppedEvents = 0;
    }
    for (const event of events) this.send(event);
  }

  private send(event: TelemetryEvent & { at: string }): void {
    const payload = JSON.stringify({ schemaVersion: PAYLOAD_SCHEMA_VERSION, boxId: this.options.boxId, ...event });
    this.client?.publish(`${this.topicBase}/events/${event.type}`, payload, { qos: 1 });
  }

  private publishStatus(): void {
    const client = this.client;
    if (!client?.connected || !this.status) return;
    const document = {
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      boxId: this.options.boxId,
      softwareVersion: this.options.softwareVersion,
      ...pickStatus(this.status),
    };
    const json = JSON.stringify(document);
    if (json === this.lastStatusJson) return;
    this.lastStatusJson = json;
    client.publish(`${this.topicBase}/status`, JSON.stringify({ ...document, at: new Date().toISOString() }), { qos: 1, retain: true });
  }
}

/** Copies only the allow-listed status fields. */
function pickStatus(status: TelemetryStatus): TelemetryStatus {
  return {
    videoSignal: status.videoSignal,
    videoWidth: status.videoWidth,
    videoHeight: status.videoHeight,
    videoFps: status.videoFps === undefined ? undefined : Math.round(status.videoFps * 10) / 10,
    footswitchConnected: status.footswitchConnected,
    queueDepth: status.queueDepth,
    setAside: status.setAside,
    lastError: status.lastError,
  };
}

/** Copies only the allow-listed event fields. */
function pickEvent(event: TelemetryEvent): TelemetryEvent {
  return {
    type: event.type,
    id: event.id,
    severity: event.severity,
    objectId: event.objectId,
    destination: event.destination,
    status: event.status,
    reason: event.reason,
    bytes: event.bytes,
    clipId: event.clipId,
    part: event.part,
  };
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

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
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
