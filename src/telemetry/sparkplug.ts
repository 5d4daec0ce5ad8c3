import sparkplugPayload from 'sparkplug-payload';
import type { UMetric } from 'sparkplug-payload/lib/sparkplugbpayload.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { MqttConfig } from '../profile/schema.js';
import { MqttConnection } from './connection.js';
import type { StatusPayload } from './payloads.js';

/*
 * Sparkplug B edge node (Eclipse Sparkplug 3.0). It has its own MQTT
 * connection, because its NDEATH must be that connection's Last Will while
 * the main connection's Will is the availability topic. On each connection:
 * NBIRTH with every metric, seq 0 and the bdSeq of the Will; then NDATA with
 * changed metrics, seq counting 1..255 and wrapping to 0. bdSeq counts
 * connections from 0 at process start (not stored across restarts) and wraps
 * at 256. An NCMD with `Node Control/Rebirth` true makes the node publish
 * NBIRTH again. Payloads are encoded and decoded by the Eclipse Tahu library
 * `sparkplug-payload`.
 */

export const SPARKPLUG_NAMESPACE = 'spBv1.0';
const REBIRTH_METRIC = 'Node Control/Rebirth';

const codec = sparkplugPayload.get(SPARKPLUG_NAMESPACE);

export interface SparkplugNodeOptions {
  config: MqttConfig;
  groupId: string;
  edgeNodeId: string;
  clientId: string;
  log: Logger;
}

type MetricValue = number | boolean | string | null;
type MetricType = 'Boolean' | 'Float' | 'UInt32' | 'UInt64' | 'String';

export class SparkplugNode {
  private readonly options: SparkplugNodeOptions;
  private readonly log: Logger;
  private readonly connection: MqttConnection;
  private bdSeq = 0;
  private seq = 0;
  private born = false;
  private status: StatusPayload | undefined;
  private published = new Map<string, MetricValue>();

  constructor(options: SparkplugNodeOptions) {
    if (!codec) throw new Error(`sparkplug-payload has no codec for ${SPARKPLUG_NAMESPACE}`);
    this.options = options;
    this.log = options.log.child({ component: 'sparkplug' });
    this.connection = new MqttConnection({
      config: options.config,
      clientId: options.clientId,
      will: { topic: this.topic('NDEATH'), payload: this.deathPayload(), qos: 1, retain: false },
      log: this.log,
    });
  }

  topic(messageType: 'NBIRTH' | 'NDEATH' | 'NDATA' | 'NCMD'): string {
    return `${SPARKPLUG_NAMESPACE}/${this.options.groupId}/${messageType}/${this.options.edgeNodeId}`;
  }

  get connected(): boolean {
    return this.connection.connected;
  }

  async start(): Promise<void> {
    this.connection.on('connected', () => {
      this.born = false;
      const client = this.connection.client;
      client?.subscribe(this.topic('NCMD'), { qos: 1 }, (error) => {
        if (error) this.log.warn({ err: { message: error.message } }, 'NCMD subscription failed');
      });
      this.birth();
    });
    this.connection.on('disconnected', () => {
      this.born = false;
    });
    await this.connection.start();
    const client = this.connection.client;
    client?.on('close', () => {
      // Each new connection carries the next bdSeq in its Will and its NBIRTH.
      this.born = false;
      this.bdSeq = (this.bdSeq + 1) % 256;
      this.connection.setWill(this.deathPayload());
    });
    client?.on('message', (topic, payload) => {
      if (topic === this.topic('NCMD')) this.command(payload);
    });
  }

  /** Publishes NDEATH, as the Will would, then disconnects. */
  async stop(timeoutMs: number): Promise<void> {
    await this.connection.stop([{ topic: this.topic('NDEATH'), payload: this.deathPayload(), retain: false }], timeoutMs);
  }

  /** Takes the latest status: NBIRTH when none was sent on this connection, else NDATA with the metrics that changed. */
  update(status: StatusPayload): void {
    this.status = status;
    const client = this.connection.client;
    if (!client?.connected) return;
    if (!this.born) {
      this.birth();
      return;
    }
    const changed = this.metrics(status).filter((metric) => this.published.get(metric.name ?? '') !== metric.value);
    if (changed.length === 0) return;
    this.seq = (this.seq + 1) % 256;
    for (const metric of changed) this.published.set(metric.name ?? '', metric.value as MetricValue);
    client.publish(this.topic('NDATA'), Buffer.from(this.encode({ timestamp: Date.now(), seq: this.seq, metrics: changed })), { qos: 0, retain: false });
  }

  private birth(): void {
    const client = this.connection.client;
    if (!client?.connected || !this.status) return;
    this.seq = 0;
    const metrics = [
      metric('bdSeq', 'UInt64', this.bdSeq),
      metric(REBIRTH_METRIC, 'Boolean', false),
      ...this.metrics(this.status),
    ];
    this.published = new Map(metrics.map((entry) => [entry.name ?? '', entry.value as MetricValue]));
    client.publish(this.topic('NBIRTH'), Buffer.from(this.encode({ timestamp: Date.now(), seq: 0, metrics })), { qos: 0, retain: false });
    this.born = true;
    this.log.info({ bdSeq: this.bdSeq }, 'Sparkplug NBIRTH published');
  }

  private command(payload: Buffer): void {
    let metrics: UMetric[];
    try {
      metrics = codec?.decodePayload(payload).metrics ?? [];
    } catch (error) {
      this.log.warn({ err: { message: errorMessage(error) } }, 'Sparkplug NCMD not decodable, ignored');
      return;
    }
    if (metrics.some((entry) => entry.name === REBIRTH_METRIC && entry.value === true)) {
      this.log.info('Sparkplug rebirth requested');
      this.born = false;
      this.birth();
    }
  }

  private deathPayload(): Buffer {
    return Buffer.from(this.encode({ timestamp: Date.now(), metrics: [metric('bdSeq', 'UInt64', this.bdSeq)] }));
  }

  private encode(payload: { timestamp: number; seq?: number; metrics: UMetric[] }): Uint8Array {
    if (!codec) throw new Error(`sparkplug-payload has no codec for ${SPARKPLUG_NAMESPACE}`);
    return codec.encodePayload(payload);
  }

  /** The node's metrics; NBIRTH declares every one of them, so the set depends on the profile only. */
  private metrics(status: StatusPayload): UMetric[] {
    const list: UMetric[] = [
      metric('Properties/Software Version', 'String', status.softwareVersion),
      metric('Properties/Profile Version', 'String', status.profileVersion),
      metric('Video/Signal', 'Boolean', status.video.signal),
      metric('Video/Frame Rate', 'Float', status.video.fps),
      metric('Video/Frames Dropped', 'UInt64', status.video.framesDropped),
      metric('Footswitch/Connected', 'Boolean', status.footswitch.connected),
      metric('Barcode Reader/Connected', 'Boolean', status.barcodeReader.connected),
      metric('Exam/Active', 'Boolean', status.exam.active),
      metric('Worklist/Cache Age Seconds', 'UInt64', status.worklist.cacheAgeSeconds),
      metric('Spool/Objects', 'UInt64', status.spool.objects),
      metric('Spool/Bytes', 'UInt64', status.spool.bytes),
      metric('Spool/Oldest Undelivered Seconds', 'UInt64', status.spool.oldestUndeliveredSeconds),
      metric('Alarms/Count', 'UInt32', status.alarms.length),
      metric('Alarms/Active', 'String', status.alarms.join(',')),
      metric('System/Disk Free Bytes', 'UInt64', status.system.diskFreeBytes),
      metric('System/CPU Percent', 'Float', status.system.cpuPercent),
      metric('System/Memory Available Bytes', 'UInt64', status.system.memoryAvailableBytes),
      metric('System/Temperature Celsius', 'Float', status.system.temperatureCelsius),
      metric('System/Event Loop Delay P99 Ms', 'Float', status.system.eventLoopDelayP99Ms),
    ];
    for (const [name, destination] of Object.entries(status.destinations)) {
      list.push(
        metric(`Destinations/${name}/Queued`, 'UInt64', destination.queued),
        metric(`Destinations/${name}/Set Aside`, 'UInt64', destination.setAside),
        metric(`Destinations/${name}/Awaiting Commitment`, 'UInt64', destination.awaitingCommitment),
        metric(`Destinations/${name}/Link Up`, 'Boolean', destination.linkUp),
        metric(`Destinations/${name}/Last Result`, 'String', destination.lastResult),
      );
    }
    return list;
  }
}

function metric(name: string, type: MetricType, value: MetricValue): UMetric {
  if (value === null) return { name, type, value: null, isNull: true };
  return { name, type, value };
}
