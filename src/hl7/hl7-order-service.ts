import { EventEmitter } from 'node:events';
import { errorMessage } from '../errors.js';
import { LogThrottle } from '../footswitch/log-throttle.js';
import type { Logger } from '../log.js';
import type { Hl7Config } from '../profile/hl7-schema.js';
import type { WorklistEntry } from '../worklist/worklist-entry.js';
import { Hl7Handler, type MessageOutcome } from './hl7-handler.js';
import { MllpListener, type MllpListenerStatus } from './mllp-listener.js';
import { OrderStore } from './order-store.js';

/** Interval of the removal of expired orders. */
const PRUNE_INTERVAL_MS = 3_600_000;

/** Shortest time between two log lines about rejected messages; the lines in between are counted. */
const REJECTED_LOG_INTERVAL_MS = 10_000;

/** Wait before trying again to bind a port that another program holds. */
const REBIND_INTERVAL_MS = 10_000;

export interface Hl7OrderServiceOptions {
  config: Hl7Config;
  stateDirectory: string;
  log: Logger;
  /** Clock in ms since the epoch; tests pass a fake one. */
  clock?: () => number;
  /** Wait before binding again after a failure; 10 s unless a test sets it. */
  rebindIntervalMs?: number;
}

export interface Hl7Status extends MllpListenerStatus {
  openOrders: number;
  /** Messages acknowledged with AA. */
  messagesAccepted: number;
  /** Messages acknowledged with AE or AR. */
  messagesRejected: number;
}

interface Hl7OrderServiceEvents {
  /** A message was acknowledged. The payload names its type and outcome only. */
  messageProcessed: [{ messageType: string; code: string; condition?: string }];
  /** Orders were cancelled; the entry keys let the exam workflow see whether the open exam's order is one of them. */
  ordersCancelled: [{ orders: Array<{ orderId: string; entryKey: string }> }];
  /** The listener could not bind (`listening` false, with the reason) or bound after an earlier failure. */
  listenerChanged: [{ listening: boolean; reason?: string }];
}

/**
 * Orders from HL7 v2: the MLLP listener, the message handler and the durable
 * order store, whose entries the exam workflow selects from alongside the
 * worklist's.
 */
export class Hl7OrderService extends EventEmitter<Hl7OrderServiceEvents> {
  private readonly options: Hl7OrderServiceOptions;
  private readonly log: Logger;
  private store: OrderStore | undefined;
  private listener: MllpListener | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;
  private rebindTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly rebindIntervalMs: number;
  private readonly counters = { messagesAccepted: 0, messagesRejected: 0 };
  private readonly rejectedLog = new LogThrottle(REJECTED_LOG_INTERVAL_MS, Date.now);

  constructor(options: Hl7OrderServiceOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'hl7' });
    this.rebindIntervalMs = options.rebindIntervalMs ?? REBIND_INTERVAL_MS;
  }

  /**
   * Opens the order store and starts listening. A port that cannot be bound
   * is logged and tried again every few seconds: capture and the orders
   * already stored go on meanwhile.
   */
  async start(): Promise<void> {
    this.stopped = false;
    const { config } = this.options;
    const store = await OrderStore.open({
      stateDirectory: this.options.stateDirectory,
      retentionHours: config.orderRetentionHours,
      log: this.log,
      ...(this.options.clock ? { clock: this.options.clock } : {}),
    });
    this.store = store;
    this.log.info({ openOrders: store.size }, 'HL7 orders loaded');
    const handler = new Hl7Handler({ config, store, log: this.log, ...(this.options.clock ? { clock: this.options.clock } : {}) });
    const listener = new MllpListener({
      host: config.host,
      port: config.port,
      allowedPeers: config.allowedPeers,
      maxConnections: config.maxConnections,
      maxMessageBytes: config.maxMessageBytes,
      handle: async (frame, connectionId) => {
        const outcome = await handler.handle(frame);
        this.report(outcome, connectionId);
        return outcome.ack;
      },
      log: this.log,
    });
    this.listener = listener;
    await this.listen(listener, false);
    this.pruneTimer = setInterval(() => {
      store.prune().catch((error: unknown) => this.log.error({ err: { message: errorMessage(error) } }, 'expired HL7 orders not removed'));
    }, PRUNE_INTERVAL_MS);
    this.pruneTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pruneTimer);
    clearTimeout(this.rebindTimer);
    await this.listener?.stop();
  }

  private async listen(listener: MllpListener, retrying: boolean): Promise<void> {
    try {
      await listener.start();
      if (retrying) this.emit('listenerChanged', { listening: true });
    } catch (error) {
      const reason = errorMessage(error);
      if (!retrying) {
        this.log.error({ err: { message: reason }, retryMs: this.rebindIntervalMs }, 'HL7 listener not started; trying again');
        this.emit('listenerChanged', { listening: false, reason });
      }
      if (this.stopped) return;
      this.rebindTimer = setTimeout(() => void this.listen(listener, true), this.rebindIntervalMs);
      this.rebindTimer.unref();
    }
  }

  /** The procedure entries of the open orders. */
  get entries(): readonly WorklistEntry[] {
    return this.store?.entries ?? [];
  }

  /** The bound port, once started. */
  get port(): number | undefined {
    return this.listener?.status().port;
  }

  status(): Hl7Status {
    const listener = this.listener?.status() ?? { listening: false, port: undefined, connections: 0, connectionsRejected: 0, bytesDiscarded: 0, framesIncomplete: 0 };
    return { ...listener, openOrders: this.store?.size ?? 0, ...this.counters };
  }

  /** Logs one message's outcome: its type, ACK code and internal order ids, never its content. */
  private report(outcome: MessageOutcome, connectionId: number): void {
    const fields = {
      connectionId,
      messageType: outcome.messageType,
      ack: outcome.code,
      placed: outcome.placed,
      cancelled: outcome.cancelled.map((order) => order.orderId),
      patientUpdates: outcome.patientUpdates,
      openOrders: this.store?.size ?? 0,
    };
    if (outcome.code === 'AA') {
      this.counters.messagesAccepted += 1;
      this.log.info(fields, 'HL7 message accepted');
    } else {
      this.counters.messagesRejected += 1;
      // A sender that repeats a bad message for ever logs one line per interval, with the count.
      const rejected = this.rejectedLog.add();
      if (rejected !== undefined) this.log.warn({ ...fields, condition: outcome.condition, reason: outcome.reason, rejectedSinceLastLine: rejected }, 'HL7 message rejected');
    }
    this.emit('messageProcessed', { messageType: outcome.messageType, code: outcome.code, ...(outcome.condition ? { condition: outcome.condition } : {}) });
    if (outcome.cancelled.length > 0) this.emit('ordersCancelled', { orders: outcome.cancelled });
  }
}
