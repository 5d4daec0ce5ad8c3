import type { IPublishPacket, MqttClient } from 'mqtt';
import { z } from 'zod';
import { ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { CommandOutcome, CommandRegistry } from './commands.js';
import { commandRequestSchema, commandResponseSchema, PAYLOAD_SCHEMA_VERSION, type CommandResponse } from './payloads.js';
import { isPublishableTopic, type TelemetryTopics } from './topics.js';

/** Largest request payload read, in bytes; requests carry a few ids at most. */
const MAX_REQUEST_BYTES = 64 * 1024;
/** Commands running at once; further requests are answered COMMAND_BUSY at once. */
const MAX_RUNNING = 4;

export interface CommandChannelOptions {
  registry: CommandRegistry;
  topics: TelemetryTopics;
  boxId: string;
  log: Logger;
}

interface Reply {
  topic: string;
  command: string;
  correlationId?: string;
  correlationData?: Buffer;
}

/**
 * Serves the command registry over MQTT. A request is a message on
 * `<base>/commands/<name>` with an optional JSON payload
 * `{"args":{...},"responseTopic":"...","correlationId":"..."}`. MQTT 5
 * requesters may use the Response Topic and Correlation Data properties
 * instead; MQTT 3.1.1 ones put them in the payload. Every request gets one
 * response, errors included; without a response topic it goes to
 * `<base>/responses/<name>`.
 */
export class CommandChannel {
  private readonly options: CommandChannelOptions;
  private readonly log: Logger;
  private running = 0;

  constructor(options: CommandChannelOptions) {
    this.options = options;
    this.log = options.log;
  }

  /** Subscribes once; mqtt.js subscribes again after every reconnect. */
  async attach(client: MqttClient): Promise<void> {
    client.on('message', (topic, payload, packet) => {
      const name = this.options.topics.commandName(topic);
      if (name === undefined) return;
      void this.handle(client, name, payload, packet).catch((error: unknown) => {
        this.log.error({ command: name, err: { message: errorMessage(error) } }, 'command response not sent');
      });
    });
    await client.subscribeAsync(this.options.topics.commandFilter, { qos: 1 });
  }

  private async handle(client: MqttClient, name: string, payload: Buffer, packet: IPublishPacket): Promise<void> {
    // A retained request would run again at every reconnect, so none is run.
    if (packet.retain) {
      this.log.warn({ command: name }, 'retained command request ignored');
      return;
    }
    const reply: Reply = { topic: `${this.options.topics.responses}/${name}`, command: name };
    const correlationData = packet.properties?.correlationData;
    if (correlationData) reply.correlationData = Buffer.from(correlationData);

    const request = this.parse(payload);
    if (request.correlationId) reply.correlationId = request.correlationId;
    else if (correlationData) reply.correlationId = printableCorrelation(correlationData);
    const requestedTopic = packet.properties?.responseTopic ?? request.responseTopic;
    if (requestedTopic !== undefined) {
      if (isPublishableTopic(requestedTopic)) reply.topic = requestedTopic;
      else if (!request.error) request.error = { code: ErrorCodes.COMMAND_INVALID, message: 'responseTopic must be a topic name without wildcards' };
    }

    if (request.error) {
      this.log.warn({ command: name, code: request.error.code }, 'invalid command request');
      await this.respond(client, reply, { ok: false, error: request.error });
      return;
    }
    if (this.running >= MAX_RUNNING) {
      await this.respond(client, reply, { ok: false, error: { code: ErrorCodes.COMMAND_BUSY, message: `${MAX_RUNNING} commands are running; send it again later` } });
      return;
    }

    this.running += 1;
    let outcome: CommandOutcome;
    try {
      this.log.info({ command: name }, 'command received');
      outcome = await this.options.registry.run(name, request.args);
    } finally {
      this.running -= 1;
    }
    if (!outcome.ok) this.log.warn({ command: name, code: outcome.error.code, reason: outcome.error.message }, 'command failed');
    await this.respond(client, reply, outcome);
    if (outcome.ok) {
      for (const action of outcome.afterResponse) action();
    }
  }

  private parse(payload: Buffer): { args: unknown; responseTopic?: string; correlationId?: string; error?: { code: string; message: string } } {
    if (payload.length > MAX_REQUEST_BYTES) {
      return { args: {}, error: { code: ErrorCodes.COMMAND_INVALID, message: `request longer than ${MAX_REQUEST_BYTES} bytes` } };
    }
    const text = payload.toString('utf8').trim();
    if (text === '') return { args: {} };
    let document: unknown;
    try {
      document = JSON.parse(text);
    } catch {
      return { args: {}, error: { code: ErrorCodes.COMMAND_INVALID, message: 'request payload is not JSON; send {"args":{...}} or nothing' } };
    }
    const parsed = commandRequestSchema.safeParse(document);
    if (!parsed.success) {
      // Keep what can be read, so that even a malformed request is answered where the requester listens.
      const loose = z.looseObject({ responseTopic: z.string().optional().catch(undefined), correlationId: z.string().max(128).optional().catch(undefined) }).safeParse(document);
      const issues = parsed.error.issues.map((issue) => `${issue.path.map(String).join('.') || '(request)'}: ${issue.message}`).join('; ');
      const result: { args: unknown; responseTopic?: string; correlationId?: string; error: { code: string; message: string } } = {
        args: {},
        error: { code: ErrorCodes.COMMAND_INVALID, message: `invalid request: ${issues}` },
      };
      if (loose.success && loose.data.responseTopic !== undefined) result.responseTopic = loose.data.responseTopic;
      if (loose.success && loose.data.correlationId !== undefined) result.correlationId = loose.data.correlationId;
      return result;
    }
    const result: { args: unknown; responseTopic?: string; correlationId?: string } = { args: parsed.data.args };
    if (parsed.data.responseTopic !== undefined) result.responseTopic = parsed.data.responseTopic;
    if (parsed.data.correlationId !== undefined) result.correlationId = parsed.data.correlationId;
    return result;
  }

  private async respond(client: MqttClient, reply: Reply, outcome: { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } }): Promise<void> {
    const response: CommandResponse = commandResponseSchema.parse({
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      boxId: this.options.boxId,
      at: new Date().toISOString(),
      command: reply.command,
      correlationId: reply.correlationId,
      ok: outcome.ok,
      ...(outcome.ok ? { result: outcome.result } : { error: outcome.error }),
    });
    const properties = reply.correlationData && client.options.protocolVersion === 5 ? { correlationData: reply.correlationData } : undefined;
    await client.publishAsync(reply.topic, JSON.stringify(response), { qos: 1, retain: false, ...(properties ? { properties } : {}) });
  }
}

/** Correlation data as text when it is short printable ASCII, for MQTT 3.1.1 listeners of an MQTT 5 request. */
function printableCorrelation(data: Buffer): string | undefined {
  const text = data.toString('latin1');
  return data.length <= 128 && /^[\x20-\x7e]+$/.test(text) ? text : undefined;
}
