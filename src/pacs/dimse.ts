import dimse from 'dcmjs-dimse';
// Loads dcmjs with its console logging off, before any data set is converted.
import '../dicom/dcmjs.js';
import type { Logger } from '../log.js';
import { SopClassUid, UNCOMPRESSED_TRANSFER_SYNTAXES } from './service-tables.js';

/**
 * The parts of dcmjs-dimse 0.3.3 the association requesters use, in one place,
 * so that a library upgrade touches few files: data set parsing and conversion
 * between uncompressed transfer syntaxes. The network protocol is endocap's own
 * (scu-association.ts): docs/dicom-library-defects.md lists the library
 * client's defects that made it necessary.
 */

export const { Dataset, Transcoding } = dimse;
export const { TransferSyntax } = dimse.constants;

export type DatasetInstance = InstanceType<typeof Dataset>;

/** Verification SOP Class (PS3.4 A.4). */
export const verificationSopClassUid = SopClassUid.Verification;

/** Transfer syntaxes of uncompressed data, which the library can convert between. */
export const uncompressedTransferSyntaxes = UNCOMPRESSED_TRANSFER_SYNTAXES;

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
