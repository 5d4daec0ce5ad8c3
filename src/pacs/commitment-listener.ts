import { EventEmitter } from 'node:events';
import net from 'node:net';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { CommitmentListenerConfig } from '../profile/schema.js';
import {
  LibraryImplementation,
  NEventReportResponse,
  PresentationContextResult,
  RejectReason,
  RejectResult,
  RejectSource,
  ScpBase,
  type AssociationInstance,
  type NEventReportRequestInstance,
  type NEventReportResponseInstance,
} from './commitment-dimse.js';
import { storageCommitmentSopClassUid, storageCommitmentSopInstanceUid } from './commitment-messages.js';
import { handleEventReport } from './commitment-report.js';
import type { CommitmentResultSink } from './commitment-tracker.js';
import { routeLibraryLog } from './dimse.js';
import { COMMITMENT_LISTENER_CONTEXTS, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME } from './service-tables.js';

export interface AssociationRejectedEvent {
  callingAeTitle: string;
  calledAeTitle: string;
  address: string;
  reason: string;
}

export interface CommitmentListenerEvents {
  associationRejected: [AssociationRejectedEvent];
}

export interface CommitmentListenerOptions {
  config: CommitmentListenerConfig;
  /** AE title the PACS must call: the configured one or, by default, the station's. */
  aeTitle: string;
  sink: CommitmentResultSink;
  log: Logger;
  /** An association idle for this long is closed, in milliseconds. */
  idleTimeoutMs?: number;
  /** Associations open at the same time; more are rejected as transient. */
  maxAssociations?: number;
}

export const defaultIdleTimeoutMs = 30_000;
export const defaultMaxAssociations = 4;

/** Time a rejected peer has to close the connection itself before it is closed here. */
const rejectLingerMs = 1_000;

/**
 * Largest PDU the listener announces in its A-ASSOCIATE-AC: the smaller of
 * the requester's maximum and this value, the dcmjs-dimse 0.3.3 default (262144).
 */
export function listenerMaxPduLength(): number {
  return LibraryImplementation.getMaxPduLength();
}

/** Strips the IPv4-mapped prefix that a dual-stack socket puts before an IPv4 peer's address. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** Matches an address against one allowed host, so that equal IPv6 addresses written differently still match. */
function addressMatcher(host: string): (address: string) => boolean {
  const family = net.isIPv6(host) ? 'ipv6' : 'ipv4';
  const list = new net.BlockList();
  list.addAddress(host, family);
  return (address) => {
    const plain = plainAddress(address);
    return list.check(plain, net.isIPv6(plain) ? 'ipv6' : 'ipv4');
  };
}

/**
 * Receives Storage Commitment results (N-EVENT-REPORT, PS3.4 J.3.3) that a
 * PACS sends on an association it opens to this box. It listens only on the
 * configured address: the socket is accepted here and handed to dcmjs-dimse's
 * Scp class, because the library's Server binds every interface. It accepts
 * an association only when both the calling AE title and the source address
 * match an allowed peer and the called AE title is this box's, and it accepts
 * no presentation context but Storage Commitment Push Model.
 */
export class CommitmentListener extends EventEmitter<CommitmentListenerEvents> {
  private readonly config: CommitmentListenerConfig;
  private readonly aeTitle: string;
  private readonly sink: CommitmentResultSink;
  private readonly log: Logger;
  private readonly idleTimeoutMs: number;
  private readonly maxAssociations: number;
  private readonly peers: Array<{ aeTitle: string; matches: (address: string) => boolean }>;
  private readonly sockets = new Set<net.Socket>();
  private server: net.Server | undefined;
  private associations = 0;

  constructor(options: CommitmentListenerOptions) {
    super();
    this.config = options.config;
    this.aeTitle = options.aeTitle.trim();
    this.sink = options.sink;
    this.log = options.log.child({ component: 'commitment-listener' });
    this.idleTimeoutMs = options.idleTimeoutMs ?? defaultIdleTimeoutMs;
    this.maxAssociations = options.maxAssociations ?? defaultMaxAssociations;
    this.peers = options.config.allowedPeers.map((peer) => ({ aeTitle: peer.aeTitle.trim(), matches: addressMatcher(peer.host) }));
  }

  /** Starts listening and returns the bound port. */
  async start(): Promise<number> {
    if (this.server) throw new Error('CommitmentListener started twice');
    routeLibraryLog(this.log);
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    const { host, port } = this.config;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      this.server = undefined;
      const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
      throw new EndocapError(ErrorCodes.COMMITMENT_LISTENER_FAILED, `failed to listen on ${host}:${port} for commitment results: ${code}`, { cause: error });
    }
    server.on('error', (error) => this.log.error({ err: { message: errorMessage(error) } }, 'commitment listener error'));
    const bound = (server.address() as net.AddressInfo).port;
    this.log.info({ host, port: bound, aeTitle: this.aeTitle, allowedPeers: this.config.allowedPeers.length }, 'commitment listener started');
    return bound;
  }

  /** Stops listening and closes open associations. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
    this.log.info('commitment listener stopped');
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', (error) => this.log.debug({ err: { message: errorMessage(error) } }, 'commitment listener connection error'));
    const address = plainAddress(socket.remoteAddress ?? '');
    const listener = this;

    class CommitmentScp extends ScpBase {
      override associationRequested(association: AssociationInstance): void {
        const rejection = listener.checkPeer(association, address);
        if (rejection) {
          this.sendAssociationReject(rejection.result, rejection.source, rejection.reason);
          setTimeout(() => socket.destroy(), rejectLingerMs).unref();
          return;
        }
        listener.associations += 1;
        socket.once('close', () => {
          listener.associations -= 1;
        });
        listener.choosePresentationContexts(association);
        // dcmjs-dimse 0.3.3 writes its own implementation UID and version name into the A-ASSOCIATE-AC
        // unless these process-wide settings name endocap's.
        LibraryImplementation.setImplementationClassUid(IMPLEMENTATION_CLASS_UID);
        LibraryImplementation.setImplementationVersion(IMPLEMENTATION_VERSION_NAME);
        this.sendAssociationAccept();
      }

      override nEventReportRequest(request: NEventReportRequestInstance, callback: (response: NEventReportResponseInstance) => void): void {
        void listener.answer(request).then(callback);
      }

      override associationReleaseRequested(): void {
        this.sendAssociationReleaseResponse();
      }

      override abort(): void {
        socket.destroy();
      }
    }

    const scp = new CommitmentScp(socket, { connectTimeout: this.idleTimeoutMs, associationTimeout: this.idleTimeoutMs, pduTimeout: this.idleTimeoutMs });
    scp.on('networkError', (error: unknown) => {
      this.log.debug({ address, err: { message: errorMessage(error) } }, 'commitment association ended with an error');
      socket.destroy();
    });
  }

  /** Returns the A-ASSOCIATE-RJ fields for a peer that may not send results, or undefined for an allowed one. */
  private checkPeer(association: AssociationInstance, address: string): { result: number; source: number; reason: number } | undefined {
    const callingAeTitle = association.getCallingAeTitle().trim();
    const calledAeTitle = association.getCalledAeTitle().trim();
    const reject = (reason: string, fields: { result: number; source: number; reason: number }): typeof fields => {
      this.log.warn({ callingAeTitle, calledAeTitle, address, reason }, 'commitment association rejected');
      this.emit('associationRejected', { callingAeTitle, calledAeTitle, address, reason });
      return fields;
    };

    if (!this.peers.some((peer) => peer.aeTitle === callingAeTitle && peer.matches(address))) {
      return reject('calling AE title and address match no allowed peer', {
        result: RejectResult.Permanent,
        source: RejectSource.ServiceUser,
        reason: RejectReason.CallingAeNotRecognized,
      });
    }
    if (calledAeTitle !== this.aeTitle) {
      return reject('called AE title is not this box\'s', { result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CalledAeNotRecognized });
    }
    if (this.associations >= this.maxAssociations) {
      return reject('too many associations open', {
        result: RejectResult.Transient,
        source: RejectSource.ServiceProviderPresentation,
        reason: RejectReason.LocalLimitExceeded,
      });
    }
    return undefined;
  }

  /**
   * Accepts the contexts of COMMITMENT_LISTENER_CONTEXTS (Storage Commitment
   * Push Model in little endian) and rejects every other abstract syntax. A
   * role selection the PACS proposed (SCP role, to send the report) is
   * returned as proposed.
   */
  private choosePresentationContexts(association: AssociationInstance): void {
    for (const { context } of association.getPresentationContexts()) {
      const acceptable = COMMITMENT_LISTENER_CONTEXTS.find((candidate) => candidate.abstractSyntaxUid === context.getAbstractSyntaxUid());
      if (!acceptable) {
        context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
        continue;
      }
      const transferSyntaxUid = context.getTransferSyntaxUids().find((uid) => acceptable.transferSyntaxUids.includes(uid));
      if (transferSyntaxUid) context.setResult(PresentationContextResult.Accept, transferSyntaxUid);
      else context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
    }
  }

  private async answer(request: NEventReportRequestInstance): Promise<NEventReportResponseInstance> {
    const status = await handleEventReport(
      {
        affectedSopClassUid: request.getAffectedSopClassUid(),
        affectedSopInstanceUid: request.getAffectedSopInstanceUid(),
        eventTypeId: request.getEventTypeId(),
        elements: request.getDataset()?.getElements(),
      },
      this.sink,
      'listener',
      this.log,
    );
    const response = NEventReportResponse.fromRequest(request);
    // Orthanc 1.10 rejects a response that does not name the affected SOP class and instance.
    response.setAffectedSopClassUid(storageCommitmentSopClassUid);
    response.setAffectedSopInstanceUid(storageCommitmentSopInstanceUid);
    response.setStatus(status);
    return response;
  }
}
