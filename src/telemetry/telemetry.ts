import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { MqttClient } from 'mqtt';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { MqttConfig } from '../profile/schema.js';
import { AlarmBook } from './alarms.js';
import { CommandChannel } from './command-channel.js';
import { CommandRegistry } from './commands.js';
import { MqttConnection } from './connection.js';
import { EventBuffer } from './event-buffer.js';
import { HomeAssistantDiscovery } from './home-assistant.js';
import { alarmsPayloadSchema, eventFieldsSchema, eventPayloadSchema, PAYLOAD_SCHEMA_VERSION, type EventPayload, type StatusPayload, type SystemStatus, type TelemetryEvent } from './payloads.js';
import { SparkplugNode } from './sparkplug.js';
import { buildStatus, statusChangeKey, type StatusInput } from './status-document.js';
import { StatusSampler } from './status-sampler.js';
import { telemetryTopics, type TelemetryTopics } from './topics.js';

export { PAYLOAD_SCHEMA_VERSION } from './payloads.js';
export type { TelemetryEvent } from './payloads.js';
export type { StatusInput } from './status-document.js';
export { redactUrl } from './connection.js';

/** Events kept while the broker is unreachable; older ones are dropped first. */
export const MAX_PENDING_EVENTS = 200;
/** Changes within this time are merged into one status message, in ms. */
const STATUS_MERGE_MS = 100;

export interface TelemetryOptions {
  config: MqttConfig;
  boxId: string;
  clientId: string;
  softwareVersion: string;
  log: Logger;
  /** Returns the daemon's current state; without it no status document is published. */
  readStatus?: () => StatusInput | undefined;
  /** Commands served when `config.commands.enabled`; an empty registry when absent. */
  commands?: CommandRegistry;
  /** Folder whose filesystem's free space is reported; the working folder when absent. */
  diskPath?: string;
  /** Destination names, for the Home Assistant entities. */
  destinations?: string[];
  /** Folder of the kernel's thermal zones, for tests. */
  thermalDirectory?: string;
}

interface TelemetryEvents {
  connected: [];
  disconnected: [];
}

/**
 * Fleet telemetry over MQTT: retained availability backed by the Last Will,
 * a retained status document on change and at a heartbeat, a retained list of
 * active alarms, events, commands, and optionally Home Assistant discovery and
 * a Sparkplug B node. Publishing never blocks capture or delivery: while the
 * broker is unreachable, status is merged into the latest value and events
 * wait in a bounded buffer that is sent once on reconnect.
 */
export class Telemetry extends EventEmitter<TelemetryEvents> {
  readonly alarms = new AlarmBook();
  readonly commands: CommandRegistry;
  readonly topics: TelemetryTopics;
  private readonly options: TelemetryOptions;
  private readonly log: Logger;
  private readonly connection: MqttConnection;
  private readonly events = new EventBuffer<EventPayload>(MAX_PENDING_EVENTS);
  private readonly sampler: StatusSampler;
  private readonly startId = randomBytes(4).toString('hex');
  private eventCounter = 0;
  private system: SystemStatus | undefined;
  private lastStatusKey = '';
  private statusTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private homeAssistant: HomeAssistantDiscovery | undefined;
  private sparkplug: SparkplugNode | undefined;
  private attached = false;

  constructor(options: TelemetryOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'telemetry' });
    this.topics = telemetryTopics(options.config.topicPrefix, options.boxId);
    this.commands = options.commands ?? new CommandRegistry();
    this.sampler = new StatusSampler({ diskPath: options.diskPath ?? process.cwd(), ...(options.thermalDirectory ? { thermalDirectory: options.thermalDirectory } : {}) });
    this.connection = new MqttConnection({
      config: options.config,
      clientId: options.clientId,
      will: { topic: this.topics.availability, payload: Buffer.from('offline'), qos: 1, retain: true },
      log: this.log,
    });
    this.alarms.on('alarmRaised', (alarm) => {
      this.log.warn({ alarmId: alarm.id, severity: alarm.severity, reason: alarm.reason }, 'alarm raised');
      this.publishEvent({ type: 'alarm-raised', id: alarm.id, severity: alarm.severity, reason: alarm.reason });
      this.publishAlarms();
      this.statusChanged();
    });
    this.alarms.on('alarmCleared', ({ id }) => {
      this.log.info({ alarmId: id }, 'alarm cleared');
      this.publishEvent({ type: 'alarm-cleared', id });
      this.publishAlarms();
      this.statusChanged();
    });
  }

  get connected(): boolean {
    return this.connection.connected;
  }

  /** `<topicPrefix>/<boxId>`. */
  get topicBase(): string {
    return this.topics.base;
  }

  /** Reads credential and TLS files and starts connecting in the background; never waits for the broker. */
  async start(): Promise<void> {
    const { config } = this.options;
    this.sampler.start();
    this.system = await this.sampler.sample();
    if (config.homeAssistant.enabled) {
      this.homeAssistant = new HomeAssistantDiscovery({
        discoveryPrefix: config.homeAssistant.discoveryPrefix,
        boxId: this.options.boxId,
        softwareVersion: this.options.softwareVersion,
        topics: this.topics,
        destinations: this.options.destinations ?? [],
        log: this.log,
      });
    }

    this.connection.on('connected', () => this.onConnected());
    this.connection.on('disconnected', () => this.emit('disconnected'));
    this.connection.on('takenOver', () => this.alarms.raise('mqtt-client-id-conflict', 'warning', 'another connection uses this client id; give each box its own station.boxId or mqtt.clientId'));
    await this.connection.start();

    if (config.sparkplug.enabled) {
      this.sparkplug = new SparkplugNode({
        config,
        groupId: config.sparkplug.groupId,
        edgeNodeId: config.sparkplug.edgeNodeId ?? this.options.boxId,
        clientId: `${this.options.clientId}-spb`,
        log: this.log,
      });
      await this.sparkplug.start();
    }

    this.heartbeat = setInterval(() => void this.beat(), config.statusIntervalMs);
    this.heartbeat.unref();
  }

  /** Publishes `offline` (and Sparkplug NDEATH), then disconnects; each bounded by `timeoutMs`. */
  async stop(timeoutMs = 2_000): Promise<void> {
    clearInterval(this.heartbeat);
    clearTimeout(this.statusTimer);
    this.sampler.stop();
    await this.sparkplug?.stop(timeoutMs);
    await this.connection.stop([{ topic: this.topics.availability, payload: 'offline', retain: true }], timeoutMs);
  }

  /** Tells telemetry that the state changed; the status is read and published within about 100 ms if a listed field changed. */
  statusChanged(): void {
    if (this.statusTimer || !this.options.readStatus) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      this.publishStatus(false);
    }, STATUS_MERGE_MS);
    this.statusTimer.unref();
  }

  /** Publishes an event now, or keeps it (bounded) until the broker is back. Only listed fields are kept. */
  publishEvent(event: TelemetryEvent): void {
    const parsed = eventFieldsSchema.safeParse(event);
    if (!parsed.success) {
      this.log.error({ type: event.type }, 'event with invalid fields not published');
      return;
    }
    this.eventCounter += 1;
    const payload = eventPayloadSchema.parse({
      ...parsed.data,
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      boxId: this.options.boxId,
      eventId: `${this.startId}-${this.eventCounter}`,
      at: new Date().toISOString(),
    });
    const client = this.connection.client;
    if (client?.connected) this.sendEvent(client, payload);
    else this.events.push(payload);
  }

  /** The current status document, for the `status` command; undefined without readStatus. */
  currentStatus(): StatusPayload | undefined {
    const input = this.options.readStatus?.();
    if (!input || !this.system) return undefined;
    const history = this.connection.history;
    return buildStatus(input, {
      boxId: this.options.boxId,
      softwareVersion: this.options.softwareVersion,
      alarmIds: this.alarms.list().map((alarm) => alarm.id),
      mqtt: { connects: history.connectCount, recentConnects: history.recentConnects, flapping: history.flapping },
      system: this.system,
      now: new Date(),
    });
  }

  private onConnected(): void {
    const client = this.connection.client;
    if (!client) return;
    client.publish(this.topics.availability, 'online', { qos: 1, retain: true });
    this.alarms.set('mqtt-flapping', this.connection.history.flapping, 'warning', `${this.connection.history.recentConnects} broker connections within 10 minutes`);
    this.publishAlarms();
    this.lastStatusKey = '';
    this.publishStatus(true);
    const dropped = this.events.dropped;
    const pending = this.events.drain();
    if (dropped > 0) this.log.warn({ dropped, sent: pending.length }, 'events dropped while the broker was unreachable');
    for (const event of pending) this.sendEvent(client, event);
    this.homeAssistant?.announce(client);
    if (!this.attached) {
      this.attached = true;
      void this.attach(client);
    }
    this.emit('connected');
  }

  /** Subscribes once; mqtt.js renews the subscriptions after each reconnect. */
  private async attach(client: MqttClient): Promise<void> {
    try {
      if (this.options.config.commands.enabled) {
        await new CommandChannel({ registry: this.commands, topics: this.topics, boxId: this.options.boxId, log: this.log }).attach(client);
      }
      await this.homeAssistant?.attach(client);
    } catch (error) {
      // Subscriptions are renewed at the next connection.
      this.attached = false;
      this.log.warn({ err: { message: errorMessage(error) } }, 'subscribing to command topics failed');
    }
  }

  private async beat(): Promise<void> {
    try {
      this.system = await this.sampler.sample();
    } catch (error) {
      this.log.warn({ err: { message: errorMessage(error) } }, 'system sample failed');
    }
    const history = this.connection.history;
    if (this.connection.connected) this.alarms.set('mqtt-flapping', history.flapping, 'warning', `${history.recentConnects} broker connections within 10 minutes`);
    this.publishStatus(true);
  }

  private publishStatus(always: boolean): void {
    let status: StatusPayload | undefined;
    try {
      status = this.currentStatus();
    } catch (error) {
      this.log.error({ err: { message: errorMessage(error) } }, 'status document not built');
      return;
    }
    if (!status) return;
    this.sparkplug?.update(status);
    const client = this.connection.client;
    if (!client?.connected) return;
    const key = statusChangeKey(status);
    if (!always && key === this.lastStatusKey) return;
    this.lastStatusKey = key;
    client.publish(this.topics.status, JSON.stringify(status), { qos: 1, retain: true });
  }

  private publishAlarms(): void {
    const client = this.connection.client;
    if (!client?.connected) return;
    const payload = alarmsPayloadSchema.parse({ schemaVersion: PAYLOAD_SCHEMA_VERSION, boxId: this.options.boxId, at: new Date().toISOString(), alarms: this.alarms.list() });
    client.publish(this.topics.alarms, JSON.stringify(payload), { qos: 1, retain: true });
  }

  private sendEvent(client: MqttClient, event: EventPayload): void {
    client.publish(this.topics.event(event.type), JSON.stringify(event), { qos: 1 });
  }
}
