import net, { type Socket } from 'node:net';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import {
  AbortReason,
  AbortSource,
  Association,
  Network,
  PresentationContextResult,
  RejectResult,
  type DimseNetwork,
  type RequestInstance,
} from './dimse.js';

/** One presentation context to propose: an abstract syntax and its transfer syntaxes in order of preference. */
export interface ProposedContext {
  abstractSyntaxUid: string;
  transferSyntaxUids: string[];
}

/** A presentation context the peer accepted. */
export interface AcceptedContext {
  id: number;
  abstractSyntaxUid: string;
  transferSyntaxUid: string;
}

export interface OpenAssociationOptions {
  host: string;
  port: number;
  callingAeTitle: string;
  calledAeTitle: string;
  connectTimeoutMs: number;
  associationTimeoutMs: number;
  contexts: ProposedContext[];
  log: Logger;
  /** Aborts the association, whatever it is doing. */
  signal?: AbortSignal;
  /** Called with the TCP socket right after it is created, for diagnostics and tests. */
  onSocket?: (socket: Socket) => void;
}

/** Response fields the sender reads. C-STORE and C-ECHO responses both have them. */
export interface DimseResponse {
  getStatus(): number;
}

/** PS3.8 9.3.4, A-ASSOCIATE-RJ result, source and reason. */
const rejectReasons: Record<number, Record<number, string>> = {
  1: { 1: 'no reason given', 2: 'application context name not supported', 3: 'calling AE title not recognized', 7: 'called AE title not recognized' },
  2: { 1: 'no reason given', 2: 'protocol version not supported' },
  3: { 1: 'temporary congestion', 2: 'local limit exceeded' },
};

/** Pending (PS3.7 C.1.3): more responses follow, so it is not the final one. */
const pendingStatus = 0xff00;

/** Time allowed for an A-ABORT to leave before the socket is destroyed. */
const abortFlushMs = 500;

function describeReject(result: number, source: number, reason: number): string {
  const kind = result === RejectResult.Transient ? 'transient' : 'permanent';
  const text = rejectReasons[source]?.[reason] ?? `reason ${reason} from source ${source}`;
  return `association rejected (${kind}): ${text}`;
}

function isRejectPayload(value: unknown): value is { result: number; source: number; reason: number } {
  return typeof value === 'object' && value !== null && 'result' in value && 'source' in value && 'reason' in value;
}

/**
 * One association opened by this box as Service Class User, on a socket it owns:
 * Nagle's algorithm is off, every step has a time limit, and a peer's A-ABORT,
 * a reset or a close fails the association at once. A failed association is
 * never used again.
 */
export class ScuAssociation {
  private readonly socket: Socket;
  private readonly network: DimseNetwork;
  private readonly association: InstanceType<typeof Association>;
  private readonly where: string;
  private readonly log: Logger;
  private failure: EndocapError | undefined;
  private connected = false;
  private established = false;
  private releasing = false;
  private rejectWaiter: ((error: EndocapError) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(options: OpenAssociationOptions) {
    this.where = `${options.host}:${options.port}`;
    this.log = options.log;
    this.association = new Association(options.callingAeTitle, options.calledAeTitle);
    for (const context of options.contexts) {
      const id = this.association.addPresentationContext(context.abstractSyntaxUid);
      for (const uid of context.transferSyntaxUids) this.association.addTransferSyntaxToPresentationContext(id, uid);
    }

    this.socket = net.connect({ host: options.host, port: options.port, noDelay: true });
    options.onSocket?.(this.socket);
    // The library emits its events synchronously, so socket listeners added
    // before it get the precise cause (refused, reset) ahead of its generic
    // networkError.
    this.watchSocket();
    // Every step is timed here, so the library's own timers only act as a backstop.
    const backstopMs = 2 * Math.max(options.connectTimeoutMs, options.associationTimeoutMs, 60_000);
    this.network = new Network(this.socket, { connectTimeout: backstopMs, associationTimeout: backstopMs, pduTimeout: backstopMs });
    this.socket.setTimeout(0);
    this.watchNetwork();
  }

  /** Connects and negotiates. Rejects with an EndocapError whose `retryable` is false for permanent failures. */
  static open(options: OpenAssociationOptions): Promise<ScuAssociation> {
    const scu = new ScuAssociation(options);
    return new Promise<ScuAssociation>((resolve, reject) => {
      scu.rejectWaiter = reject;
      scu.startTimer(options.connectTimeoutMs, () => {
        return new EndocapError(ErrorCodes.PACS_TIMEOUT, `connect to ${scu.where} timed out after ${options.connectTimeoutMs} ms`, { retryable: true });
      });
      scu.socket.once('connect', () => {
        scu.startTimer(options.associationTimeoutMs, () => {
          return new EndocapError(ErrorCodes.PACS_TIMEOUT, `association with ${scu.where} timed out after ${options.associationTimeoutMs} ms`, { retryable: true });
        });
        scu.network.sendAssociationRequest(scu.association);
      });
      scu.network.on('associationAccepted', () => {
        scu.clearTimer();
        scu.rejectWaiter = undefined;
        scu.established = true;
        resolve(scu);
      });
      const signal = options.signal;
      if (signal) {
        const onAbort = (): void => scu.abort('association aborted: sender stopping');
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
        scu.socket.once('close', () => signal.removeEventListener('abort', onAbort));
      }
    });
  }

  /** Presentation contexts the peer accepted, with the transfer syntax it chose for each. */
  acceptedContexts(): AcceptedContext[] {
    const accepted: AcceptedContext[] = [];
    for (const { context } of this.association.getPresentationContexts()) {
      const transferSyntaxUid = context.getAcceptedTransferSyntaxUid();
      if (context.getResult() !== PresentationContextResult.Accept || !transferSyntaxUid) continue;
      accepted.push({ id: context.getPresentationContextId(), abstractSyntaxUid: context.getAbstractSyntaxUid(), transferSyntaxUid });
    }
    return accepted;
  }

  /**
   * Sends one request and resolves with its final response. A timeout or any
   * other failure aborts the association and rejects this and every later call.
   */
  send(request: RequestInstance, timeoutMs: number, label: string): Promise<DimseResponse> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<DimseResponse>((resolve, reject) => {
      let responded = false;
      this.rejectWaiter = reject;
      this.startTimer(timeoutMs, () => {
        return new EndocapError(ErrorCodes.PACS_TIMEOUT, `${label} to ${this.where} got no response within ${timeoutMs} ms`, { retryable: true });
      });
      // The library calls listeners with a callback when they declare two
      // parameters, so these take one.
      request.on('response', (response: DimseResponse) => {
        if (response.getStatus() === pendingStatus) return;
        responded = true;
        this.clearTimer();
        this.rejectWaiter = undefined;
        resolve(response);
      });
      request.on('done', () => {
        if (responded || this.failure) return;
        // The library ends a request without sending it when it cannot convert
        // the data set. The association itself is still usable.
        this.clearTimer();
        this.rejectWaiter = undefined;
        reject(new EndocapError(ErrorCodes.PACS_INVALID_OBJECT, `${label} was not sent: the data set could not be converted to the accepted transfer syntax`));
      });
      this.network.sendRequests(request);
    });
  }

  /** Releases the association, or aborts it when the peer does not confirm in time. Never rejects. */
  async release(timeoutMs: number): Promise<void> {
    if (this.failure) return;
    this.releasing = true;
    await new Promise<void>((resolve) => {
      this.rejectWaiter = () => resolve();
      this.startTimer(timeoutMs, () => {
        this.log.warn({ where: this.where, timeoutMs }, 'association release not confirmed, aborting');
        return new EndocapError(ErrorCodes.PACS_TIMEOUT, `release of the association with ${this.where} timed out`, { retryable: true });
      });
      this.network.on('associationReleaseResponse', () => {
        this.clearTimer();
        this.rejectWaiter = undefined;
        this.failure = new EndocapError(ErrorCodes.PACS_ABORTED, 'association released', { retryable: true });
        this.socket.end();
        // A peer that never closes its side must not keep the socket open.
        setTimeout(() => this.socket.destroy(), abortFlushMs).unref();
        resolve();
      });
      this.network.sendAssociationReleaseRequest();
    });
  }

  /** Sends an A-ABORT and closes the connection. */
  abort(reason: string): void {
    this.fail(new EndocapError(ErrorCodes.PACS_ABORTED, reason, { retryable: true }));
  }

  private watchSocket(): void {
    this.socket.on('error', (error: NodeJS.ErrnoException) => {
      this.fail(this.translateSocketError(error));
    });
    this.socket.on('connect', () => {
      this.connected = true;
    });
    this.socket.on('close', () => {
      const reason = this.releasing ? 'association released' : `connection closed by ${this.where}`;
      this.fail(new EndocapError(ErrorCodes.PACS_ABORTED, reason, { retryable: true }));
    });
  }

  private watchNetwork(): void {
    this.network.on('associationRejected', (payload: unknown) => {
      if (!isRejectPayload(payload)) return;
      // NOTE: a permanent rejection sets aside every object of the batch, even
      // when the cause is this box's own configuration (a wrong called AE title).
      const retryable = payload.result === RejectResult.Transient;
      this.fail(new EndocapError(ErrorCodes.PACS_ASSOCIATION_REJECTED, describeReject(payload.result, payload.source, payload.reason), { retryable }));
    });
    // dcmjs-dimse's Client drops this event, which is why a peer's abort used
    // to go unnoticed until the connection timed out.
    this.network.on('abort', () => {
      this.fail(new EndocapError(ErrorCodes.PACS_ABORTED, `association aborted by ${this.where}`, { retryable: true }), false);
    });
    this.network.on('networkError', (error: unknown) => {
      this.fail(new EndocapError(ErrorCodes.PACS_ABORTED, `protocol error with ${this.where}`, { retryable: true, cause: error }));
    });
  }

  private translateSocketError(error: NodeJS.ErrnoException): EndocapError {
    switch (error.code) {
      case 'ECONNREFUSED':
        return new EndocapError(ErrorCodes.PACS_CONNECT_FAILED, `connection refused by ${this.where}`, { retryable: true, cause: error });
      case 'ECONNRESET':
      case 'EPIPE':
        return new EndocapError(ErrorCodes.PACS_ABORTED, `connection reset by ${this.where}`, { retryable: true, cause: error });
      default:
        if (!this.connected) {
          return new EndocapError(ErrorCodes.PACS_CONNECT_FAILED, `connect to ${this.where} failed: ${error.code ?? errorMessage(error)}`, { retryable: true, cause: error });
        }
        return new EndocapError(ErrorCodes.PACS_ABORTED, `connection to ${this.where} failed: ${error.code ?? errorMessage(error)}`, { retryable: true, cause: error });
    }
  }

  /** Records the first failure, rejects the operation in progress and closes the connection. */
  private fail(error: EndocapError, sendAbort = true): void {
    if (this.failure) return;
    this.failure = error;
    this.clearTimer();
    const waiter = this.rejectWaiter;
    this.rejectWaiter = undefined;
    if (!this.releasing) this.log.debug({ where: this.where, code: error.code, reason: error.message }, 'association failed');

    if (sendAbort && this.established && !this.socket.destroyed && this.socket.writable) {
      this.network.sendAbort(AbortSource.ServiceUser, AbortReason.NotSpecified);
      this.socket.end();
      setTimeout(() => this.socket.destroy(), abortFlushMs).unref();
    } else {
      this.socket.destroy();
    }
    waiter?.(error);
  }

  private startTimer(ms: number, makeError: () => EndocapError): void {
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.fail(makeError());
    }, ms);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
