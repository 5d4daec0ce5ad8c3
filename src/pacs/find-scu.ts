import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { DestinationConfig } from '../profile/schema.js';
import { cFindRequest } from './dimse-command.js';
import { Dataset } from './dimse.js';
import { ScuAssociation, type DimseResponse } from './scu-association.js';
import { LITTLE_ENDIAN_TRANSFER_SYNTAXES, SopClassUid } from './service-tables.js';
import { formatStatus } from './store-status.js';
import { loadTlsSettings } from './transport.js';

/** Modality Worklist Information Model - FIND SOP Class (PS3.4 Annex K). */
export const modalityWorklistFind = SopClassUid.ModalityWorklistFind;

export interface FindOverAssociationOptions {
  /** Query/retrieve or worklist information model, such as modalityWorklistFind. */
  sopClassUid: string;
  /** Identifier encoded in `transferSyntaxUid`, which must be an accepted context of `sopClassUid`. */
  identifier: Buffer;
  transferSyntaxUid: string;
  /** Maximum wait for each response, in milliseconds. */
  timeoutMs: number;
  /** Called with each match, encoded in `transferSyntaxUid`. */
  onMatch: (match: Buffer) => void;
}

/**
 * Runs one C-FIND on an open association (PS3.4 C.4.1) and resolves with the
 * final status. Every pending response, FF00 and FF01 alike (FF01: the peer
 * ignored some optional keys), carries a match. Rejects like
 * ScuAssociation.send; a final failure status is not an error here.
 */
export async function findOverAssociation(association: ScuAssociation, options: FindOverAssociationOptions): Promise<number> {
  const response: DimseResponse = await association.send(
    { abstractSyntaxUid: options.sopClassUid, transferSyntaxUid: options.transferSyntaxUid, command: cFindRequest(options.sopClassUid), dataset: options.identifier },
    {
      timeoutMs: options.timeoutMs,
      label: 'C-FIND',
      onPending: (pending) => {
        if (pending.dataset) options.onMatch(pending.dataset);
      },
    },
  );
  return response.status;
}

export interface FindOptions {
  destination: DestinationConfig;
  callingAeTitle: string;
  sopClassUid: string;
  /** Query keys as a dcmjs naturalized data set, such as `{ PatientName: '', ScheduledProcedureStepSequence: [{ Modality: 'ES' }] }`. */
  identifier: Record<string, unknown>;
  log: Logger;
  signal?: AbortSignal;
}

export interface FindResult {
  /** Final status: 0x0000 when every match was returned. */
  status: number;
  /** Matches as dcmjs naturalized data sets. */
  matches: Array<Record<string, unknown>>;
}

/**
 * Opens an association to the destination, runs one C-FIND and releases it.
 * Throws an EndocapError when the association fails or the final status is
 * not success; a status of 0xFE00 (cancelled) also throws.
 * NOTE: dcmjs decodes text inside sequence items as Latin-1 whatever the
 * SpecificCharacterSet, so non-ASCII values in sequences may come out garbled.
 */
export async function find(options: FindOptions): Promise<FindResult> {
  const { destination } = options;
  const where = `${destination.host}:${destination.port}`;
  const association = await ScuAssociation.open({
    host: destination.host,
    port: destination.port,
    callingAeTitle: options.callingAeTitle,
    calledAeTitle: destination.calledAeTitle,
    connectTimeoutMs: destination.connectTimeoutMs,
    associationTimeoutMs: destination.associationTimeoutMs,
    contexts: [{ abstractSyntaxUid: options.sopClassUid, transferSyntaxUids: [...LITTLE_ENDIAN_TRANSFER_SYNTAXES] }],
    log: options.log,
    tls: await loadTlsSettings(destination.tls),
    signal: options.signal,
  });

  try {
    const context = association.acceptedContexts()[0];
    if (!context) throw new EndocapError(ErrorCodes.PACS_NO_PRESENTATION_CONTEXT, `${where} did not accept C-FIND for ${options.sopClassUid}`);
    let identifier: Buffer;
    try {
      identifier = new Dataset(options.identifier, context.transferSyntaxUid).getDenaturalizedDataset();
    } catch (error) {
      throw new EndocapError(ErrorCodes.PACS_INVALID_OBJECT, `C-FIND identifier could not be encoded: ${errorMessage(error)}`, { cause: error });
    }

    const matches: Array<Record<string, unknown>> = [];
    const status = await findOverAssociation(association, {
      sopClassUid: options.sopClassUid,
      identifier,
      transferSyntaxUid: context.transferSyntaxUid,
      timeoutMs: destination.requestTimeoutMs,
      onMatch: (match) => matches.push(new Dataset(match, context.transferSyntaxUid).getElements()),
    });
    if (status !== 0x0000) {
      const retryable = (status & 0xff00) === 0xa700;
      throw new EndocapError(ErrorCodes.PACS_STATUS_FAILURE, `C-FIND to ${where} ended with status ${formatStatus(status)} after ${matches.length} matches`, { retryable });
    }
    return { status, matches };
  } finally {
    await association.release(destination.associationTimeoutMs);
  }
}
