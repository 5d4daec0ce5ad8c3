import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { DestinationConfig } from '../profile/schema.js';
import {
  actionRequestCommand,
  decodeDataset,
  encodeActionDataset,
  eventReportResponseCommand,
  storageCommitmentSopClassUid,
  type ReferencedObject,
} from './commitment-messages.js';
import { handleEventReport } from './commitment-report.js';
import type { CommitmentResultSink } from './commitment-tracker.js';
import { CommandField, CommandTag, type CommandElement } from './dimse-command.js';
import { ScuAssociation, type IncomingRequest } from './scu-association.js';
import { STORAGE_COMMITMENT_CONTEXT } from './service-tables.js';
import { formatStatus } from './store-status.js';
import { loadTlsSettings } from './transport.js';

export interface CommitmentRequestOptions {
  destination: DestinationConfig;
  callingAeTitle: string;
  transactionUid: string;
  objects: ReferencedObject[];
  /** Time the association stays open after the N-ACTION response, for a result sent on it, in milliseconds. */
  reportWaitMs: number;
  /** Receives a result that the PACS sends on this association. */
  sink: CommitmentResultSink;
  log: Logger;
  /** Aborts the association, whatever it is doing. */
  signal?: AbortSignal;
}

/**
 * - `requested`: the PACS accepted the request. The result follows, on this
 *   association (`reportedHere`) or later on one it opens to the listener.
 * - `unsupported`: the PACS does not offer Storage Commitment, or rejected this box.
 * - `failed`: worth retrying. `sent` is true when the request may have reached
 *   the PACS, so that a result may still arrive.
 */
export type CommitmentRequestOutcome =
  | { kind: 'requested'; status: number; reportedHere: boolean }
  | { kind: 'unsupported'; reason: string }
  | { kind: 'failed'; reason: string; sent: boolean };

/**
 * Classifies the N-ACTION response status (PS3.7 10.1.4.1.10). Warnings count
 * as accepted. Resource limitation, out of resources and processing failure
 * may pass. Any other failure means the PACS will not commit for this box.
 */
function classifyActionStatus(status: number): 'accepted' | 'transient' | 'rejected' {
  if (status === 0x0000 || status === 0x0001 || status === 0x0107 || status === 0x0116 || (status & 0xf000) === 0xb000) return 'accepted';
  if (status === 0x0213 || status === 0x0110 || (status & 0xff00) === 0xa700) return 'transient';
  return 'rejected';
}

function toEndocapError(error: unknown): EndocapError {
  if (error instanceof EndocapError) return error;
  return new EndocapError(ErrorCodes.PACS_ABORTED, `unexpected error: ${errorMessage(error)}`, { retryable: true, cause: error });
}

/** Responds to requests the PACS sends on the association: it handles a Storage Commitment result and rejects anything else. */
class ReportReceiver {
  reportedHere = false;
  private notify: (() => void) | undefined;

  constructor(private readonly options: CommitmentRequestOptions) {}

  readonly onRequest = async (request: IncomingRequest): Promise<CommandElement[]> => {
    const { command } = request;
    if (command.commandField !== CommandField.NEventReportRq) {
      // C.4 of PS3.7: an operation the requester does not offer is "unrecognized operation".
      this.options.log.warn({ commandField: command.commandField }, 'request from PACS on commitment association rejected');
      return [
        { tag: CommandTag.AffectedSopClassUid, vr: 'UI', value: request.abstractSyntaxUid },
        { tag: CommandTag.CommandField, vr: 'US', value: ((command.commandField ?? 0) | 0x8000) & 0xffff },
        { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0x0101 },
        { tag: CommandTag.Status, vr: 'US', value: 0x0211 },
      ];
    }
    const eventTypeId = command.uint16(CommandTag.EventTypeId);
    const status = await handleEventReport(
      {
        affectedSopClassUid: command.text(CommandTag.AffectedSopClassUid),
        affectedSopInstanceUid: command.text(CommandTag.AffectedSopInstanceUid),
        eventTypeId,
        elements: request.dataset ? decodeDataset(request.dataset, request.transferSyntaxUid) : undefined,
      },
      this.options.sink,
      'same-association',
      this.options.log,
    );
    this.reportedHere = true;
    this.notify?.();
    return eventReportResponseCommand(status, eventTypeId);
  };

  /** Waits up to `ms` for a result; resolves early once one was handled. */
  async wait(ms: number): Promise<void> {
    if (ms <= 0 || this.reportedHere) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, ms);
      this.notify = finish;
      const signal = this.options.signal;
      signal?.addEventListener('abort', finish, { once: true });
      function finish(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', finish);
        resolve();
      }
    });
    this.notify = undefined;
  }
}

/**
 * Asks the destination for Storage Commitment of `objects` under
 * `transactionUid` (PS3.4 J.3.2), with one N-ACTION request on a new
 * association. The caller records the transaction durably first. A result the
 * PACS sends on this association before it is released gets a response and is
 * passed to `sink`. Never throws.
 */
export async function requestCommitment(options: CommitmentRequestOptions): Promise<CommitmentRequestOutcome> {
  const { destination, transactionUid } = options;
  const where = `${destination.host}:${destination.port}`;
  const receiver = new ReportReceiver(options);

  let association: ScuAssociation;
  try {
    association = await ScuAssociation.open({
      host: destination.host,
      port: destination.port,
      callingAeTitle: options.callingAeTitle,
      calledAeTitle: destination.calledAeTitle,
      connectTimeoutMs: destination.connectTimeoutMs,
      associationTimeoutMs: destination.associationTimeoutMs,
      contexts: [STORAGE_COMMITMENT_CONTEXT],
      log: options.log,
      tls: await loadTlsSettings(destination.tls),
      signal: options.signal,
      onRequest: receiver.onRequest,
    });
  } catch (error) {
    const failure = toEndocapError(error);
    // A permanent rejection is final until someone changes a configuration, so it is treated like a missing feature.
    if (failure.code === ErrorCodes.PACS_ASSOCIATION_REJECTED && !failure.retryable) return { kind: 'unsupported', reason: failure.message };
    return { kind: 'failed', reason: failure.message, sent: false };
  }

  const context = association.acceptedContexts().find((candidate) => candidate.abstractSyntaxUid === storageCommitmentSopClassUid);
  if (!context) {
    await association.release(destination.associationTimeoutMs);
    return { kind: 'unsupported', reason: `${where} did not accept the Storage Commitment Push Model SOP Class` };
  }

  let status: number;
  try {
    const response = await association.send(
      {
        abstractSyntaxUid: storageCommitmentSopClassUid,
        transferSyntaxUid: context.transferSyntaxUid,
        command: actionRequestCommand(),
        dataset: encodeActionDataset(transactionUid, options.objects, context.transferSyntaxUid),
      },
      { timeoutMs: destination.requestTimeoutMs, label: `N-ACTION of transaction ${transactionUid}` },
    );
    status = response.status;
  } catch (error) {
    association.abort('commitment request failed');
    return { kind: 'failed', reason: toEndocapError(error).message, sent: true };
  }

  const verdict = classifyActionStatus(status);
  if (verdict === 'accepted') await receiver.wait(options.reportWaitMs);
  await association.release(destination.associationTimeoutMs);
  if (verdict === 'accepted') return { kind: 'requested', status, reportedHere: receiver.reportedHere };
  const reason = `N-ACTION failed with status ${formatStatus(status)}`;
  return verdict === 'transient' ? { kind: 'failed', reason, sent: false } : { kind: 'unsupported', reason };
}
