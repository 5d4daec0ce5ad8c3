import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import type { CommandElement, DecodedCommand } from './dimse-command.js';
import type { TlsSettings } from './transport.js';

/** Types of the association requester's interface (scu-association.ts), which re-exports them. */

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
  /** Time for the TCP connection, and again for the TLS handshake. */
  connectTimeoutMs: number;
  associationTimeoutMs: number;
  contexts: ProposedContext[];
  log: Logger;
  /** DICOM over TLS; plain TCP when absent. */
  tls?: TlsSettings;
  /** Aborts the association, whatever it is doing. */
  signal?: AbortSignal;
  /** Called with the socket right after it is created, for diagnostics and tests. */
  onSocket?: (socket: Socket) => void;
  /**
   * Handles a request the acceptor sends on this association, such as a
   * Storage Commitment result (PS3.4 J.3.3), and returns the command elements
   * of the response. The association adds MessageIDBeingRespondedTo. Without
   * this handler, such requests are logged and get no response.
   */
  onRequest?: (request: IncomingRequest) => Promise<CommandElement[]>;
}

/** A request the acceptor sent on this association. */
export interface IncomingRequest {
  command: DecodedCommand;
  dataset?: Buffer;
  /** Abstract syntax of the presentation context it arrived on. */
  abstractSyntaxUid: string;
  /** Transfer syntax of that context, in which `dataset` is encoded. */
  transferSyntaxUid: string;
}

/** A DIMSE request to send; the association assigns its MessageID. */
export interface DimseRequest {
  /** Abstract syntax of the accepted presentation context to send on. */
  abstractSyntaxUid: string;
  /** Transfer syntax the data set is encoded in; with no data set, any accepted context of the abstract syntax is used. */
  transferSyntaxUid?: string;
  command: CommandElement[];
  /** Encoded data set, sent as it is. */
  dataset?: Buffer;
}

/** A response to a request: the final one, or a pending one passed to `onPending`. */
export interface DimseResponse {
  command: DecodedCommand;
  status: number;
  /** The data set after the command, such as a C-FIND match. */
  dataset?: Buffer;
  getStatus(): number;
}

export interface SendOptions {
  /**
   * Maximum wait without progress, in milliseconds: for the peer to accept
   * more bytes of the data set, then for each response.
   */
  timeoutMs: number;
  /** Names the request in reasons, such as "C-STORE of object 0001". */
  label: string;
  /** Called with each pending response (status FF00 or FF01). */
  onPending?: (response: DimseResponse) => void;
}
