import type { MqttClient } from 'mqtt';
import type { Logger } from '../log.js';
import type { TelemetryTopics } from './topics.js';

/*
 * Home Assistant MQTT discovery: one retained config message per entity on
 * `<discoveryPrefix>/<component>/<nodeId>/<objectId>/config`. Every entity
 * reads the retained status (or alarms) document through a value template,
 * takes its availability from the box's availability topic and belongs to one
 * device, so each box shows up as a device with its sensors. Home Assistant
 * publishes `online` on `<discoveryPrefix>/status` when it starts; the configs
 * are published again then, in case its broker lost them.
 */

export interface DiscoveryMessage {
  topic: string;
  config: Record<string, unknown>;
}

export interface HomeAssistantOptions {
  discoveryPrefix: string;
  boxId: string;
  softwareVersion: string;
  topics: TelemetryTopics;
  destinations: string[];
  log: Logger;
}

interface EntitySpec {
  component: 'sensor' | 'binary_sensor';
  objectId: string;
  name: string;
  /** JSON path in the status document, as used after `value_json`. */
  path: string;
  extra?: Record<string, unknown>;
}

/** Turns an id into the characters Home Assistant allows in discovery topic levels and unique ids. */
function discoveryId(value: string): string {
  return value.replace(/[^A-Za-z0-9_-]/g, '_');
}

function statusEntities(destinations: string[]): EntitySpec[] {
  const measurement = { state_class: 'measurement' };
  const diagnostic = { entity_category: 'diagnostic' };
  const entities: EntitySpec[] = [
    { component: 'binary_sensor', objectId: 'video_signal', name: 'Video signal', path: '.video.signal' },
    { component: 'binary_sensor', objectId: 'footswitch', name: 'Footswitch', path: '.footswitch.connected', extra: { device_class: 'connectivity' } },
    { component: 'binary_sensor', objectId: 'barcode_reader', name: 'Barcode reader', path: '.barcodeReader.connected', extra: { device_class: 'connectivity' } },
    { component: 'binary_sensor', objectId: 'exam_active', name: 'Exam active', path: '.exam.active', extra: { device_class: 'running' } },
    { component: 'sensor', objectId: 'frame_rate', name: 'Frame rate', path: '.video.fps', extra: { unit_of_measurement: 'fps', ...measurement } },
    { component: 'sensor', objectId: 'frames_dropped', name: 'Frames dropped', path: '.video.framesDropped', extra: { state_class: 'total_increasing' } },
    { component: 'sensor', objectId: 'spool_objects', name: 'Spool objects', path: '.spool.objects', extra: measurement },
    { component: 'sensor', objectId: 'spool_bytes', name: 'Spool size', path: '.spool.bytes', extra: { device_class: 'data_size', unit_of_measurement: 'B', ...measurement } },
    { component: 'sensor', objectId: 'oldest_undelivered', name: 'Oldest undelivered object', path: '.spool.oldestUndeliveredSeconds', extra: { device_class: 'duration', unit_of_measurement: 's' } },
    { component: 'sensor', objectId: 'worklist_age', name: 'Worklist age', path: '.worklist.cacheAgeSeconds', extra: { device_class: 'duration', unit_of_measurement: 's' } },
    { component: 'sensor', objectId: 'disk_free', name: 'Disk free', path: '.system.diskFreeBytes', extra: { device_class: 'data_size', unit_of_measurement: 'B', ...measurement } },
    { component: 'sensor', objectId: 'cpu', name: 'CPU', path: '.system.cpuPercent', extra: { unit_of_measurement: '%', ...measurement } },
    { component: 'sensor', objectId: 'memory_available', name: 'Memory available', path: '.system.memoryAvailableBytes', extra: { device_class: 'data_size', unit_of_measurement: 'B', ...measurement } },
    { component: 'sensor', objectId: 'temperature', name: 'Temperature', path: '.system.temperatureCelsius', extra: { device_class: 'temperature', unit_of_measurement: '°C', ...measurement } },
    { component: 'sensor', objectId: 'event_loop_delay', name: 'Event-loop delay', path: '.system.eventLoopDelayP99Ms', extra: { device_class: 'duration', unit_of_measurement: 'ms', ...measurement, ...diagnostic } },
    { component: 'sensor', objectId: 'software_version', name: 'Software version', path: '.softwareVersion', extra: diagnostic },
    { component: 'sensor', objectId: 'profile_version', name: 'Profile version', path: '.profileVersion', extra: diagnostic },
  ];
  for (const destination of destinations) {
    const id = discoveryId(destination);
    const base = `.destinations['${destination}']`;
    entities.push(
      { component: 'sensor', objectId: `${id}_queued`, name: `${destination} queued`, path: `${base}.queued`, extra: measurement },
      { component: 'sensor', objectId: `${id}_set_aside`, name: `${destination} set aside`, path: `${base}.setAside`, extra: measurement },
      { component: 'sensor', objectId: `${id}_awaiting_commitment`, name: `${destination} awaiting commitment`, path: `${base}.awaitingCommitment`, extra: measurement },
      { component: 'sensor', objectId: `${id}_last_result`, name: `${destination} last result`, path: `${base}.lastResult` },
    );
  }
  return entities;
}

/** Builds the discovery config messages of one box. */
export function discoveryMessages(options: Omit<HomeAssistantOptions, 'log'>): DiscoveryMessage[] {
  const nodeId = `endocap_${discoveryId(options.boxId)}`;
  const device = {
    identifiers: [nodeId],
    name: `endocap ${options.boxId}`,
    manufacturer: 'endocap',
    model: 'endoscopy capture box',
    sw_version: options.softwareVersion,
  };
  const common = {
    availability_topic: options.topics.availability,
    payload_available: 'online',
    payload_not_available: 'offline',
    device,
    origin: { name: 'endocap', sw_version: options.softwareVersion },
  };
  const messages = statusEntities(options.destinations).map((entity): DiscoveryMessage => {
    const template = entity.component === 'binary_sensor' ? `{{ 'ON' if value_json${entity.path} else 'OFF' }}` : `{{ value_json${entity.path} }}`;
    return {
      topic: `${options.discoveryPrefix}/${entity.component}/${nodeId}/${entity.objectId}/config`,
      config: {
        name: entity.name,
        unique_id: `${nodeId}_${entity.objectId}`,
        state_topic: options.topics.status,
        value_template: template,
        ...common,
        ...entity.extra,
      },
    };
  });
  // The problem sensor reads the alarms document, and shows the active alarms as attributes.
  messages.push({
    topic: `${options.discoveryPrefix}/binary_sensor/${nodeId}/problem/config`,
    config: {
      name: 'Problem',
      unique_id: `${nodeId}_problem`,
      state_topic: options.topics.alarms,
      value_template: "{{ 'ON' if value_json.alarms | length > 0 else 'OFF' }}",
      json_attributes_topic: options.topics.alarms,
      json_attributes_template: '{{ {"alarms": value_json.alarms} | tojson }}',
      device_class: 'problem',
      ...common,
    },
  });
  return messages;
}

/** Publishes the discovery configs on connect and whenever Home Assistant reports that it started. */
export class HomeAssistantDiscovery {
  private readonly options: HomeAssistantOptions;
  private readonly messages: DiscoveryMessage[];

  constructor(options: HomeAssistantOptions) {
    this.options = options;
    this.messages = discoveryMessages(options);
  }

  get statusTopic(): string {
    return `${this.options.discoveryPrefix}/status`;
  }

  async attach(client: MqttClient): Promise<void> {
    client.on('message', (topic, payload) => {
      if (topic !== this.statusTopic || payload.toString() !== 'online') return;
      this.options.log.info('Home Assistant started, discovery published again');
      this.announce(client);
    });
    await client.subscribeAsync(this.statusTopic, { qos: 1 });
  }

  announce(client: MqttClient): void {
    for (const message of this.messages) {
      client.publish(message.topic, JSON.stringify(message.config), { qos: 1, retain: true });
    }
  }
}
