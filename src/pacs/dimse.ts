import dimse from 'dcmjs-dimse';
import type { Scp } from 'dcmjs-dimse';
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';

/**
 * The parts of dcmjs-dimse 0.3.3 the PACS senders use, in one place, so that
 * a library upgrade touches one file.
 */

export const { Dataset, Transcoding } = dimse;
export const { Association } = dimse.association;
export const { CEchoRequest, CStoreRequest } = dimse.requests;
export const { AbortReason, AbortSource, PresentationContextResult, RejectResult, TransferSyntax } = dimse.constants;

export type DatasetInstance = InstanceType<typeof Dataset>;
export type AssociationInstance = InstanceType<typeof Association>;
export type RequestInstance = InstanceType<typeof CEchoRequest> | InstanceType<typeof CStoreRequest>;

/** Verification SOP Class (PS3.4 A.4). */
export const verificationSopClassUid = '1.2.840.10008.1.1';

/** Transfer syntaxes of uncompressed data, which the library can convert between. */
export const uncompressedTransferSyntaxes: ReadonlySet<string> = new Set([
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
]);

export interface NetworkOptions {
  connectTimeout?: number;
  associationTimeout?: number;
  pduTimeout?: number;
}

/** The protocol engine under both Client and Scp: it reads and writes PDUs on a socket it is given. */
export type DimseNetwork = Pick<
  Scp,
  'sendAssociationRequest' | 'sendRequests' | 'sendAssociationReleaseRequest' | 'sendAbort' | 'on'
>;

type NetworkConstructor = new (socket: Socket, options?: NetworkOptions) => DimseNetwork;

/**
 * The library's `Network` class, which it does not export. `Client` creates its
 * socket itself and offers neither TCP_NODELAY, nor a way to choose presentation
 * contexts, nor the A-ABORT event, so the sender drives `Network` on a socket it
 * owns. `Scp` extends `Network` directly, so its prototype is that class.
 */
export const Network = Object.getPrototypeOf(dimse.Scp) as NetworkConstructor;

if (typeof (Network.prototype as Partial<DimseNetwork>).sendAssociationRequest !== 'function') {
  throw new Error('dcmjs-dimse: Scp no longer extends Network; update src/pacs/dimse.ts');
}

/**
 * Encoded data set that is sent as it is. The library would otherwise parse
 * and re-encode every data set, and dcmjs then splits encapsulated pixel data
 * into new fragments and rewrites the offset table. With this class the bytes
 * of the Part 10 file reach the peer unchanged. Only the two elements that the
 * C-STORE command needs are kept in parsed form.
 */
export class EncodedDataset extends Dataset {
  private readonly encoded: Buffer;

  constructor(encoded: Buffer, transferSyntaxUid: string, sopClassUid: string, sopInstanceUid: string) {
    super({ SOPClassUID: sopClassUid, SOPInstanceUID: sopInstanceUid }, transferSyntaxUid);
    this.encoded = encoded;
  }

  override getDenaturalizedDataset(): Buffer {
    return this.encoded;
  }
}

/**
 * Routes the library's log lines into `log` at debug level, or turns them off
 * when debug is disabled. dcmjs-dimse logs through the root `loglevel` logger
 * and enables every level when it loads.
 * NOTE: that logger is shared by the whole process, so the last caller's
 * logger receives the lines of every association.
 */
export function routeLibraryLog(log: Logger): void {
  const libraryLog = dimse.log;
  if (!log.isLevelEnabled('debug')) {
    libraryLog.setLevel('silent', false);
    return;
  }
  libraryLog.methodFactory = (methodName) => {
    return (...parts: unknown[]) => {
      log.debug({ libraryLevel: methodName, text: parts.map(String).join(' ') }, 'dcmjs-dimse log line');
    };
  };
  // setLevel rebuilds the logging methods with the new factory.
  libraryLog.setLevel('trace', false);
}
