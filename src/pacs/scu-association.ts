import { once } from 'node:events';
import type { Socket } from 'node:net';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { describeReject, translateSocketError } from './association-errors.js';
import type { AcceptedContext, DimseRequest, DimseResponse, IncomingRequest, OpenAssociationOptions, ProposedContext, SendOptions } from './association-types.js';
import { CommandTag, DecodedCommand, encodeCommand, isPendingStatus } from './dimse-command.js';
import { MessageAssembler } from './message-assembler.js';
import {
  PduFormatError,
  PduReader,
  PduType,
  PresentationContextResult,
  decodeAbort,
  decodeAssociateAccept,
  decodeAssociateReject,
  decodePData,
  encodeAbort,
  encodeAssociateRequest,
  encodeReleaseRequest,
  encodeReleaseResponse,
  pDataHeader,
  pdvHeaderLength,
  type RawPdu,
} from './pdu.js';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, MAX_RECEIVE_PDU_LENGTH } from './service-tables.js';
import { connectSocket } from './transport.js';

export type { AcceptedContext, DimseRequest, DimseResponse, IncomingRequest, OpenAssociationOptions, ProposedContext, SendOptions } from './association-types.js';

/** Largest PDU read from a peer that ignores that limit; anything longer is a protocol error rather than an allocation. */
const maxAcceptedPduLength = 4 * 1024 * 1024;

/** Largest PDU sent when the peer announces no limit (0). */
export const MAX_SEND_PDU_LENGTH = 4 * 1024 * 1024;

/**
 * Smallest maximum PDU length of a peer that endocap sends to. PS3.8 sets no
 * minimum. NOTE: 1024 is a choice: far below what DICOM implementations
 * announce (DCMTK 4096 at least), and large enough that a clip's PDUs stay countable.
 */
export const MIN_PEER_PDU_LENGTH = 1024;

/** Largest data set accepted in one response, such as one C-FIND match. */
const maxResponseDatasetBytes = 64 * 1024 * 1024;

/** Bytes queued on the socket before the writer waits for them to drain. */
const writeBatchBytes = 1024 * 1024;

/** Time allowed for an A-ABORT to leave before the socket is destroyed. */
const abortFlushMs = 500;

interface InFlight {
  messageId: number;
  options: SendOptions;
  resolve: (response: DimseResponse) => void;
  reject: (error: EndocapError) => void;
  /** The final response, kept until the data set has been written completely. */
  final?: DimseResponse;
  writing: boolean;
}

/** A request checked against the accepted contexts, encoded and laid out in PDUs. */
interface PreparedRequest {
  messageId: number;
  /** The PDUs to write, from planMessage(). */
  batches: Buffer[][];
  options: SendOptions;
}

/** Callbacks that send or drop a request queued by sendAfterSuccess(). */
interface QueuedSend {
  go: () => void;
  drop: () => void;
}

/** A request queued by sendAfterSuccess(). */
export interface QueuedRequest {
  /** `waiting` until the request before it ends, then `sent`, or `dropped` when that one did not succeed or the association ended. */
  readonly state: 'waiting' | 'sent' | 'dropped';
  /** The final response once sent, as from send(). Rejects when the request was dropped. */
  readonly response: Promise<DimseResponse>;
}

/**
 * One association opened by this box as Service Class User, implemented on
 * the DICOM Upper Layer directly (PS3.8). Nagle's algorithm is off, TLS is
 * available and every step has a time limit. A peer's A-ABORT, a reset or a
 * close fails the association at once. Data sets are written as views into the
 * caller's buffer, in PDUs of the peer's maximum length. A failed association
 * is never used again, and one request is in flight at a time.
 */
export class ScuAssociation {
  private readonly socket: Socket;
  private readonly where: string;
  private readonly log: Logger;
  private readonly options: OpenAssociationOptions;
  private readonly reader = new PduReader(maxAcceptedPduLength);
  private readonly assembler = new MessageAssembler(maxResponseDatasetBytes);
  private readonly proposed: Array<ProposedContext & { id: number }>;
  /** Aborted when the association fails, to end waits for socket drain. */
  private readonly closed = new AbortController();
  private readonly socketClosed: Promise<void>;
  private accepted: AcceptedContext[] = [];
  private peerMaxPduLength = 0;
  private failure: EndocapError | undefined;
  private connected = false;
  private established = false;
  private releasing = false;
  private messageId = 0;
  private inFlight: InFlight | undefined;
  /**
   * The request to send when the one in flight succeeds. Kept after that
   * success until sendQueued() runs, and dropped at any other end.
   */
  private queued: QueuedSend | undefined;
  /** Rejects the operation in progress other than a request: open or release. */
  private waiter: ((error: EndocapError) => void) | undefined;
  private onAccepted: (() => void) | undefined;
  private onReleased: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerMs = 0;
  /** Makes the error of the time limit running; undefined while none runs. */
  private onTimeout: (() => EndocapError) | undefined;

  private constructor(options: OpenAssociationOptions) {
    this.options = options;
    this.where = `${options.host}:${options.port}`;
    this.log = options.log;
    // Presentation context IDs are odd numbers from 1 to 255 (PS3.8 9.3.2.2).
    this.proposed = options.contexts.map((context, index) => ({ ...context, id: 2 * index + 1 }));
    this.socket = connectSocket(options.host, options.port, options.tls);
    this.socketClosed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    options.onSocket?.(this.socket);
    this.watchSocket();
  }

  /**
   * Resolves once the socket closed. From then on it holds no reference to
   * data written to it, so buffers of a failed send may be used again.
   */
  whenClosed(): Promise<void> {
    return this.socketClosed;
  }

  /** Connects and negotiates. Rejects with an EndocapError whose `retryable` is false for permanent failures. */
  static open(options: OpenAssociationOptions): Promise<ScuAssociation> {
    if (options.contexts.length === 0 || options.contexts.length > 128) {
      return Promise.reject(new EndocapError(ErrorCodes.PACS_NO_PRESENTATION_CONTEXT, `an association needs 1 to 128 presentation contexts, got ${options.contexts.length}`));
    }
    const scu = new ScuAssociation(options);
    return new Promise<ScuAssociation>((resolve, reject) => {
      scu.waiter = reject;
      scu.startTimer(options.connectTimeoutMs, () => {
        return new EndocapError(ErrorCodes.PACS_TIMEOUT, `connect to ${scu.where} timed out after ${options.connectTimeoutMs} ms`, { retryable: true });
      });
      scu.socket.once('connect', () => {
        scu.connected = true;
        if (!options.tls) {
          scu.requestAssociation();
          return;
        }
        scu.startTimer(options.connectTimeoutMs, () => {
          return new EndocapError(ErrorCodes.PACS_TLS_FAILED, `TLS handshake with ${scu.where} timed out after ${options.connectTimeoutMs} ms`, { retryable: true });
        });
      });
      scu.socket.once('secureConnect', () => scu.requestAssociation());
      scu.onAccepted = () => {
        scu.waiter = undefined;
        resolve(scu);
      };
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
    return this.accepted.map((context) => ({ ...context }));
  }

  /** True while requests can be sent: established, not released, not failed or aborted. */
  get usable(): boolean {
    return this.established && !this.releasing && this.failure === undefined;
  }

  /** The peer's maximum PDU length from the A-ASSOCIATE-AC; 0 means no limit. */
  get peerMaxPdu(): number {
    return this.peerMaxPduLength;
  }

  /**
   * Sends one request and resolves with its final response; pending responses
   * go to `onPending`. A request with no matching accepted presentation context
   * rejects with PACS_NO_PRESENTATION_CONTEXT and leaves the association usable.
   * A timeout or any other failure aborts the association and rejects this and
   * every later call.
   */
  send(request: DimseRequest, options: SendOptions): Promise<DimseResponse> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.established || this.releasing) {
      return Promise.reject(new EndocapError(ErrorCodes.PACS_ABORTED, `${options.label} not sent: the association with ${this.where} is not open`, { retryable: true }));
    }
    if (this.inFlight) throw new Error('ScuAssociation.send called while another request is in flight');
    let prepared: PreparedRequest;
    try {
      prepared = this.prepare(request, options, (this.messageId % 0xffff) + 1);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<DimseResponse>((resolve, reject) => this.dispatch(prepared, resolve, reject));
  }

  /**
   * Queues a request to go out as soon as the request in flight gets a final
   * response with status Success (0000), in the same turn of the event loop and
   * before that response is passed on. So the peer waits for no other work of
   * this process between the two. Returns undefined, queuing nothing, when no
   * request is in flight, one is queued already, or the association is not
   * usable. Throws like send() for a request no accepted context can carry.
   */
  sendAfterSuccess(request: DimseRequest, options: SendOptions): QueuedRequest | undefined {
    const current = this.inFlight;
    if (current === undefined || this.queued !== undefined || !this.usable) return undefined;
    const prepared = this.prepare(request, options, (current.messageId % 0xffff) + 1);
    let resolve!: (response: DimseResponse) => void;
    let reject!: (error: EndocapError) => void;
    const response = new Promise<DimseResponse>((resolveResponse, rejectResponse) => {
      resolve = resolveResponse;
      reject = rejectResponse;
    });
    // A dropped request's rejection is expected; the caller reads `state` first.
    response.catch(() => undefined);
    const queued: QueuedRequest & { state: QueuedRequest['state'] } = { state: 'waiting', response };
    this.queued = {
      go: () => {
        queued.state = 'sent';
        this.dispatch(prepared, resolve, reject);
      },
      drop: () => {
        queued.state = 'dropped';
        reject(new EndocapError(ErrorCodes.PACS_ABORTED, `${options.label} not sent: the request before it did not succeed`, { retryable: true }));
      },
    };
    return queued;
  }

  /** Checks the request against the accepted contexts, encodes its command with `messageId` and lays out its PDUs. */
  private prepare(request: DimseRequest, options: SendOptions, messageId: number): PreparedRequest {
    const context = this.accepted.find((candidate) => {
      if (candidate.abstractSyntaxUid !== request.abstractSyntaxUid) return false;
      return request.transferSyntaxUid === undefined || candidate.transferSyntaxUid === request.transferSyntaxUid;
    });
    if (!context) {
      const syntax = request.transferSyntaxUid === undefined ? '' : ` in transfer syntax ${request.transferSyntaxUid}`;
      throw new EndocapError(ErrorCodes.PACS_NO_PRESENTATION_CONTEXT, `${options.label} not sent: ${this.where} accepted no presentation context for ${request.abstractSyntaxUid}${syntax}`);
    }
    const command = encodeCommand([...request.command, { tag: CommandTag.MessageId, vr: 'US', value: messageId }]);
    return { messageId, batches: this.planMessage(context.id, command, request.dataset), options };
  }

  /** Puts a prepared request in flight and starts writing it. */
  private dispatch(prepared: PreparedRequest, resolve: (response: DimseResponse) => void, reject: (error: EndocapError) => void): void {
    const { messageId, options } = prepared;
    this.messageId = messageId;
    this.inFlight = { messageId, options, resolve, reject, writing: true };
    this.startTimer(options.timeoutMs, () => this.noResponseError(options));
    this.writeMessage(prepared.batches, options).then(
      () => this.finishWriting(messageId),
      (error: unknown) => this.fail(error instanceof EndocapError ? error : this.protocolError(error)),
    );
  }

  /** Releases the association, or aborts it when the peer does not confirm in time. Never rejects. */
  async release(timeoutMs: number): Promise<void> {
    if (this.failure || !this.established) return;
    this.releasing = true;
    this.dropQueued();
    await new Promise<void>((resolve) => {
      this.waiter = () => resolve();
      this.onReleased = () => {
        this.disposeTimer();
        this.waiter = undefined;
        this.failure = new EndocapError(ErrorCodes.PACS_ABORTED, 'association released', { retryable: true });
        this.closed.abort();
        this.socket.end();
        // A peer that never closes its side must not keep the socket open.
        setTimeout(() => this.socket.destroy(), abortFlushMs).unref();
        resolve();
      };
      this.startTimer(timeoutMs, () => {
        this.log.warn({ where: this.where, timeoutMs }, 'association release not confirmed, aborting');
        return new EndocapError(ErrorCodes.PACS_TIMEOUT, `release of the association with ${this.where} timed out`, { retryable: true });
      });
      this.socket.write(encodeReleaseRequest());
    });
  }

  /** Sends an A-ABORT and closes the connection. */
  abort(reason: string): void {
    this.fail(new EndocapError(ErrorCodes.PACS_ABORTED, reason, { retryable: true }));
  }

  private requestAssociation(): void {
    this.startTimer(this.options.associationTimeoutMs, () => {
      return new EndocapError(ErrorCodes.PACS_TIMEOUT, `association with ${this.where} timed out after ${this.options.associationTimeoutMs} ms`, { retryable: true });
    });
    this.socket.write(
      encodeAssociateRequest({
        calledAeTitle: this.options.calledAeTitle,
        callingAeTitle: this.options.callingAeTitle,
        contexts: this.proposed.map(({ id, abstractSyntaxUid, transferSyntaxUids }) => ({ id, abstractSyntaxUid, transferSyntaxUids })),
        // Only responses, C-FIND matches and Storage Commitment results arrive on these associations, so a small PDU suffices.
        maxPduLength: MAX_RECEIVE_PDU_LENGTH,
        implementationClassUid: IMPLEMENTATION_CLASS_UID,
        implementationVersionName: IMPLEMENTATION_VERSION_NAME,
      }),
    );
  }

  /**
   * Lays out the command and the data set as P-DATA-TF PDUs of at most the
   * peer's maximum length: each PDU is a 12-byte header and a view into the
   * command or `dataset`, in batches of about `writeBatchBytes`.
   */
  private planMessage(contextId: number, command: Buffer, dataset: Buffer | undefined): Buffer[][] {
    const pduLength = this.peerMaxPduLength === 0 ? MAX_SEND_PDU_LENGTH : Math.min(this.peerMaxPduLength, MAX_SEND_PDU_LENGTH);
    // Even, because DCMTK aborts on an odd PDV length and a peer may announce an odd maximum.
    const fragmentLength = (pduLength - pdvHeaderLength) & ~1;
    const parts: Array<{ bytes: Buffer; command: boolean }> = [{ bytes: command, command: true }];
    if (dataset) parts.push({ bytes: dataset, command: false });
    const batches: Buffer[][] = [];
    let batch: Buffer[] = [];
    let queued = 0;
    for (const part of parts) {
      for (let offset = 0; offset < part.bytes.length || offset === 0; offset += fragmentLength) {
        const fragment = part.bytes.subarray(offset, offset + fragmentLength);
        const last = offset + fragmentLength >= part.bytes.length;
        batch.push(pDataHeader(contextId, part.command, last, fragment.length), fragment);
        queued += fragment.length;
        if (queued < writeBatchBytes) continue;
        batches.push(batch);
        batch = [];
        queued = 0;
      }
    }
    if (batch.length > 0) batches.push(batch);
    return batches;
  }

  /**
   * Writes a message laid out by planMessage(). Each batch is corked into one
   * write, and the next one waits for the socket to drain, which keeps memory
   * bounded and restarts the time limit. Resolves once the socket has written
   * the last byte.
   */
  private async writeMessage(batches: Buffer[][], options: SendOptions): Promise<void> {
    let written: Promise<void> | undefined;
    for (const [index, batch] of batches.entries()) {
      if (index > 0 && this.socket.writableNeedDrain) await this.drained(options);
      if (this.failure) throw this.failure;
      const last = batch.length - 1;
      this.socket.cork();
      try {
        for (let position = 0; position < last; position += 1) this.socket.write(batch[position] as Buffer);
        if (index === batches.length - 1) {
          // Called once the socket handed every byte to the kernel, or dropped them when destroyed.
          written = new Promise((resolve) => this.socket.write(batch[last] as Buffer, () => resolve()));
        } else {
          this.socket.write(batch[last] as Buffer);
        }
      } finally {
        this.socket.uncork();
      }
    }
    // The request completes only after this, so a caller may reuse the data set's buffer once it has the response.
    await written;
  }

  private async drained(options: SendOptions): Promise<void> {
    try {
      await once(this.socket, 'drain', { signal: this.closed.signal });
    } catch {
      throw this.failure ?? new EndocapError(ErrorCodes.PACS_ABORTED, `connection to ${this.where} closed`, { retryable: true });
    }
    // The peer took more bytes: that is progress, so the time limit starts again.
    this.startTimer(options.timeoutMs, () => {
      return new EndocapError(ErrorCodes.PACS_TIMEOUT, `${options.label} to ${this.where} stalled: the peer accepted no data for ${options.timeoutMs} ms`, { retryable: true });
    });
  }

  private finishWriting(messageId: number): void {
    const request = this.inFlight;
    if (!request || request.messageId !== messageId) return;
    request.writing = false;
    if (request.final) {
      this.complete(request, request.final);
      this.sendQueued();
      return;
    }
    this.startTimer(request.options.timeoutMs, () => this.noResponseError(request.options));
  }

  private complete(request: InFlight, response: DimseResponse): void {
    this.clearTimer();
    this.inFlight = undefined;
    // After a success the queued request stays for sendQueued(), which the caller runs next.
    if (response.status !== 0x0000) this.dropQueued();
    request.resolve(response);
  }

  /**
   * Sends the queued request once the one before it succeeded, before that
   * response reaches its caller. Runs after every PDU of a received chunk, so
   * that an A-ABORT right behind the response drops it instead.
   */
  private sendQueued(): void {
    const queued = this.queued;
    if (queued === undefined || this.inFlight !== undefined) return;
    this.queued = undefined;
    if (this.usable) queued.go();
    else queued.drop();
  }

  private dropQueued(): void {
    const queued = this.queued;
    this.queued = undefined;
    queued?.drop();
  }

  private noResponseError(options: SendOptions): EndocapError {
    return new EndocapError(ErrorCodes.PACS_TIMEOUT, `${options.label} to ${this.where} got no response within ${options.timeoutMs} ms`, { retryable: true });
  }

  private protocolError(cause: unknown): EndocapError {
    return new EndocapError(ErrorCodes.PACS_ABORTED, `protocol error with ${this.where}: ${errorMessage(cause)}`, { retryable: true, cause });
  }

  private watchSocket(): void {
    this.socket.on('data', (chunk: Buffer) => {
      if (this.failure && !this.releasing) return;
      this.handleChunk(chunk);
      this.sendQueued();
    });
    this.socket.on('error', (error: NodeJS.ErrnoException) => {
      const context = { where: this.where, host: this.options.host, tls: this.options.tls, connected: this.connected, established: this.established };
      this.fail(translateSocketError(error, context));
    });
    this.socket.on('close', () => {
      const reason = this.releasing ? 'association released' : `connection closed by ${this.where}`;
      this.fail(new EndocapError(ErrorCodes.PACS_ABORTED, reason, { retryable: true }), false);
    });
  }

  private handleChunk(chunk: Buffer): void {
    let pdus: RawPdu[];
    try {
      pdus = this.reader.push(chunk);
    } catch (error) {
      this.fail(this.protocolError(error));
      return;
    }
    for (const pdu of pdus) {
      try {
        this.handlePdu(pdu);
      } catch (error) {
        this.fail(error instanceof EndocapError ? error : this.protocolError(error));
        return;
      }
    }
  }

  private handlePdu(pdu: RawPdu): void {
    switch (pdu.type) {
      case PduType.AssociateAc:
        this.handleAccept(pdu.body);
        return;
      case PduType.AssociateRj: {
        const { result, source, reason } = decodeAssociateReject(pdu.body);
        // NOTE: a permanent rejection sets aside every object of the batch, even
        // when the cause is this box's own configuration (a wrong called AE title).
        const { message, retryable } = describeReject(result, source, reason);
        this.fail(new EndocapError(ErrorCodes.PACS_ASSOCIATION_REJECTED, message, { retryable }), false);
        return;
      }
      case PduType.PDataTf:
        if (!this.established) throw new PduFormatError('P-DATA-TF before the association was accepted');
        for (const pdv of decodePData(pdu.body)) {
          const message = this.assembler.push(pdv);
          if (message) this.handleMessage(message.command, message.dataset, message.contextId);
        }
        return;
      case PduType.ReleaseRp:
        this.onReleased?.();
        return;
      case PduType.ReleaseRq:
        // A peer-initiated release is unusual for an acceptor; confirm it, and
        // whatever was in flight gets no response.
        this.socket.write(encodeReleaseResponse());
        this.fail(new EndocapError(ErrorCodes.PACS_ABORTED, `association released by ${this.where}`, { retryable: true }), false);
        return;
      case PduType.Abort: {
        const { source, reason } = decodeAbort(pdu.body);
        this.log.debug({ where: this.where, source, reason }, 'A-ABORT received');
        this.fail(new EndocapError(ErrorCodes.PACS_ABORTED, `association aborted by ${this.where}`, { retryable: true }), false);
        return;
      }
      default:
        throw new PduFormatError(`unexpected PDU type 0x${pdu.type.toString(16)} from an acceptor`);
    }
  }

  private handleAccept(body: Buffer): void {
    if (this.established) throw new PduFormatError('a second A-ASSOCIATE-AC');
    const accept = decodeAssociateAccept(body);
    if (accept.maxPduLength !== 0 && accept.maxPduLength < MIN_PEER_PDU_LENGTH) {
      throw new PduFormatError(`the peer announced a maximum PDU length of ${accept.maxPduLength} bytes, below the ${MIN_PEER_PDU_LENGTH} bytes endocap needs; check the peer's PDU size setting`);
    }
    this.peerMaxPduLength = accept.maxPduLength;
    for (const answer of accept.contexts) {
      const proposal = this.proposed.find((context) => context.id === answer.id);
      if (!proposal || answer.result !== PresentationContextResult.Acceptance || !answer.transferSyntaxUid) continue;
      // An acceptor may only choose one of the proposed transfer syntaxes (PS3.8 9.3.3.2).
      if (!proposal.transferSyntaxUids.includes(answer.transferSyntaxUid)) continue;
      this.accepted.push({ id: answer.id, abstractSyntaxUid: proposal.abstractSyntaxUid, transferSyntaxUid: answer.transferSyntaxUid });
    }
    this.established = true;
    this.clearTimer();
    this.log.debug({ where: this.where, accepted: this.accepted.length, proposed: this.proposed.length, peerMaxPdu: accept.maxPduLength }, 'association accepted');
    this.onAccepted?.();
  }

  private handleMessage(command: DecodedCommand, dataset: Buffer | undefined, contextId: number): void {
    const field = command.commandField ?? 0;
    if ((field & 0x8000) === 0 && this.options.onRequest) {
      this.answerRequest(command, dataset, contextId, this.options.onRequest);
      return;
    }
    const request = this.inFlight;
    if ((field & 0x8000) === 0 || !request || command.messageIdBeingRespondedTo !== request.messageId) {
      // Ignored: a request from the acceptor when no onRequest handler was given, and a response to no request in flight.
      this.log.warn({ where: this.where, commandField: field, messageId: command.messageIdBeingRespondedTo }, 'unexpected DIMSE message ignored');
      return;
    }
    const status = command.status;
    if (status === undefined) throw new PduFormatError('response without a Status (0000,0900)');
    const response: DimseResponse = { command, status, dataset, getStatus: () => status };
    if (isPendingStatus(status)) {
      this.startTimer(request.options.timeoutMs, () => this.noResponseError(request.options));
      request.options.onPending?.(response);
      return;
    }
    if (request.writing) {
      // A final response that overtakes the data set: keep it until the last
      // PDU is queued, so that the next request does not interleave with it.
      request.final = response;
      return;
    }
    this.complete(request, response);
  }

  /** Passes a request from the acceptor to `onRequest` and writes the response it returns. */
  private answerRequest(command: DecodedCommand, dataset: Buffer | undefined, contextId: number, onRequest: NonNullable<OpenAssociationOptions['onRequest']>): void {
    const context = this.accepted.find((candidate) => candidate.id === contextId);
    const messageId = command.uint16(CommandTag.MessageId);
    if (!context || messageId === undefined) throw new PduFormatError('request without a Message ID or on a presentation context that was not accepted');
    const request: IncomingRequest = { command, abstractSyntaxUid: context.abstractSyntaxUid, transferSyntaxUid: context.transferSyntaxUid };
    if (dataset) request.dataset = dataset;
    onRequest(request).then(
      (elements) => {
        // The association may have failed while the handler ran.
        if (this.failure || this.socket.destroyed) return;
        const response = encodeCommand([...elements, { tag: CommandTag.MessageIdBeingRespondedTo, vr: 'US', value: messageId }]);
        // One PDU in one write: a data set being written yields only between whole PDUs, so the two do not mix within a PDU.
        this.socket.write(Buffer.concat([pDataHeader(contextId, true, true, response.length), response]));
      },
      (error: unknown) => this.log.warn({ where: this.where, reason: errorMessage(error) }, 'request from the acceptor not answered'),
    );
  }

  /** Records the first failure, rejects the operation in progress and closes the connection. */
  private fail(error: EndocapError, sendAbort = true): void {
    if (this.failure) return;
    this.failure = error;
    this.disposeTimer();
    this.closed.abort();
    const waiter = this.waiter;
    const request = this.inFlight;
    this.waiter = undefined;
    this.inFlight = undefined;
    this.dropQueued();
    if (!this.releasing) this.log.debug({ where: this.where, code: error.code, reason: error.message }, 'association failed');

    if (sendAbort && this.established && !this.socket.destroyed && this.socket.writable) {
      // Everything queued before is whole PDUs, so the A-ABORT starts on a PDU boundary.
      this.socket.end(encodeAbort());
      setTimeout(() => this.socket.destroy(), abortFlushMs).unref();
    } else {
      this.socket.destroy();
    }
    waiter?.(error);
    request?.reject(error);
  }

  /**
   * Starts the association's one time limit, in place of the one running.
   * While the limit stays the same, as for each request of a batch, the same
   * timer is restarted: cheaper than a new one per request.
   */
  private startTimer(ms: number, makeError: () => EndocapError): void {
    if (this.timer !== undefined && this.timerMs === ms) {
      this.onTimeout = makeError;
      this.timer.refresh();
      this.timer.ref();
      return;
    }
    this.disposeTimer();
    this.onTimeout = makeError;
    this.timerMs = ms;
    this.timer = setTimeout(() => {
      const timedOut = this.onTimeout;
      this.onTimeout = undefined;
      if (timedOut !== undefined) this.fail(timedOut());
    }, ms);
  }

  /** Stops the time limit. The timer stays for the next request, and keeps the process alive no longer. */
  private clearTimer(): void {
    this.onTimeout = undefined;
    this.timer?.unref();
  }

  private disposeTimer(): void {
    this.onTimeout = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
