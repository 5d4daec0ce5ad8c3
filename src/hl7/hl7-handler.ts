import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Hl7Config } from '../profile/hl7-schema.js';
import { entryKey } from '../worklist/worklist-entry.js';
import { buildAck } from './hl7-ack.js';
import { ErrorConditions, Hl7Error, type AckCode } from './hl7-errors.js';
import { parseMessage, readHeader, type MessageHeader } from './hl7-message.js';
import type { MllpFrame } from './mllp-framer.js';
import { mapMessage, type MessageEvent } from './order-mapping.js';
import type { OrderStore } from './order-store.js';

/** Outcome of one message, for logs and counters. It contains no message content. */
export interface MessageOutcome {
  ack: Buffer;
  code: AckCode;
  /** MSH-9.1^MSH-9.2 with unusual characters replaced, or "unknown". */
  messageType: string;
  /** HL7 table 0357 condition code of an AE or AR. */
  condition?: string;
  /** The reason sent in the ACK, which names fields and limits only. */
  reason?: string;
  /** Internal ids of orders placed or replaced. */
  placed: string[];
  /** Internal ids and entry keys of orders cancelled. */
  cancelled: Array<{ orderId: string; entryKey: string }>;
  /** Orders whose patient data an ADT message changed. */
  patientUpdates: number;
}

export interface Hl7HandlerOptions {
  config: Hl7Config;
  store: OrderStore;
  log: Logger;
  /** Clock in ms since the epoch; tests pass a fake one. */
  clock?: () => number;
}

/**
 * Processes one MLLP frame: parses the message, maps it, applies it to the
 * order store and builds the ACK. AA is sent only after the change is
 * durable on disk. Nothing of the message is logged but its type.
 */
export class Hl7Handler {
  private readonly options: Hl7HandlerOptions;
  private readonly clock: () => number;
  private sequence = 0;

  constructor(options: Hl7HandlerOptions) {
    this.options = options;
    this.clock = options.clock ?? Date.now;
  }

  async handle(frame: MllpFrame): Promise<MessageOutcome> {
    const empty = { placed: [], cancelled: [], patientUpdates: 0 };
    if (frame.kind === 'oversize') {
      const header = headerOrUndefined(frame.head);
      const error = new Hl7Error('AR', ErrorConditions.applicationInternalError, `message of ${frame.bytes} bytes is longer than the receiver accepts (hl7.maxMessageBytes ${this.options.config.maxMessageBytes})`);
      return { ...empty, ...this.reply(header, typeOf(frame.head, header), 'AR', error) };
    }

    let header: MessageHeader | undefined;
    let messageType = 'unknown';
    try {
      header = readHeader(frame.payload);
      // Read from the raw header, so that an ACK for an undecodable message still names its type.
      messageType = typeOf(frame.payload, header);
      const { message } = parseMessage(frame.payload, this.options.config.defaultCharacterSet);
      const event = mapMessage(message, { patientIdAuthority: this.options.config.patientIdAuthority, accessionNumberField: this.options.config.accessionNumberField });
      const changes = await this.apply(event);
      return { ...changes, ...this.reply(header, messageType, 'AA') };
    } catch (error) {
      if (error instanceof Hl7Error) return { ...empty, ...this.reply(header, messageType, error.ack, error) };
      // A store failure or a defect: the ACK tells the sender to retry later, and the log line has no message content.
      this.options.log.error({ messageType, err: { message: errorMessage(error) } }, 'HL7 message not processed');
      const failure = new Hl7Error('AE', ErrorConditions.applicationInternalError, 'message not stored because of an internal error on the receiver; send it again later');
      return { ...empty, ...this.reply(header, messageType, 'AE', failure) };
    }
  }

  private async apply(event: MessageEvent): Promise<Pick<MessageOutcome, 'placed' | 'cancelled' | 'patientUpdates'>> {
    const { store } = this.options;
    const placed: string[] = [];
    const cancelled: MessageOutcome['cancelled'] = [];
    let patientUpdates = 0;
    switch (event.kind) {
      case 'orders':
        for (const action of event.actions) {
          if (action.kind === 'place') placed.push(...(await store.place(action.numbers, action.entries)).orderIds);
          else cancelled.push(...(await store.cancel(action.numbers, action.accessionNumbers)).map(({ orderId, entry }) => ({ orderId, entryKey: entryKey(entry) })));
        }
        break;
      case 'patient-update':
        patientUpdates = await store.updatePatient(event.update);
        break;
      case 'patient-merge':
        for (const merge of event.merges) patientUpdates += await store.mergePatient(merge.prior, merge.update);
        break;
    }
    return { placed, cancelled, patientUpdates };
  }

  private reply(header: MessageHeader | undefined, messageType: string, code: AckCode, error?: Hl7Error): Pick<MessageOutcome, 'ack' | 'code' | 'messageType' | 'condition' | 'reason'> {
    const { config } = this.options;
    const now = new Date(this.clock());
    this.sequence += 1;
    const ack = buildAck({
      header,
      triggerEvent: messageType.split('^')[1] ?? '',
      code,
      ...(error ? { error } : {}),
      receivingApplication: config.receivingApplication,
      receivingFacility: config.receivingFacility,
      controlId: `${now.getTime().toString(36).toUpperCase()}${this.sequence}`.slice(-20),
      now,
    });
    return { ack, code, messageType, ...(error ? { condition: error.condition.code, reason: error.message } : {}) };
  }
}

function headerOrUndefined(bytes: Buffer): MessageHeader | undefined {
  try {
    return readHeader(bytes);
  } catch {
    return undefined;
  }
}

/** Returns MSH-9.1^MSH-9.2 from the raw first segment, without decoding the rest of the message. */
function typeOf(head: Buffer, header: MessageHeader | undefined): string {
  if (!header) return 'unknown';
  const line = head.toString('latin1').split(/[\r\n]/)[0] ?? '';
  const type = line.split(header.separators.field)[8] ?? '';
  const [code = '', trigger = ''] = type.split(header.separators.component);
  return safeType(`${code}^${trigger}`);
}

function safeType(type: string): string {
  return type.replace(/[^A-Za-z0-9^]/g, '?').slice(0, 16);
}
