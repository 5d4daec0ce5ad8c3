import { isValidUid } from '../dicom/uid.js';
import { CommandField, CommandTag, noDataSet, type CommandElement } from './dimse-command.js';
import { Dataset } from './dimse.js';
import { SopClassUid } from './service-tables.js';
import { formatStatus } from './store-status.js';

/**
 * Data sets of the Storage Commitment Push Model SOP Class (PS3.4 Annex J):
 * the N-ACTION request that asks for commitment and the N-EVENT-REPORT that
 * carries the result.
 */

/** Storage Commitment Push Model SOP Class (PS3.4 J.3). */
export const storageCommitmentSopClassUid = SopClassUid.StorageCommitmentPushModel;

/** The well-known SOP Instance every request and report names (PS3.4 J.3.1). */
export const storageCommitmentSopInstanceUid = '1.2.840.10008.1.20.1.1';

/** Action Type ID of "Request Storage Commitment" (PS3.4 J.3.2). */
export const requestCommitmentActionTypeId = 1;

/** Event Type IDs of the result (PS3.4 J.3.3): all committed, or failures exist. */
export const commitmentEventTypes = { allCommitted: 1, failuresExist: 2 } as const;

export interface ReferencedObject {
  sopClassUid: string;
  sopInstanceUid: string;
}

export interface FailedObject extends ReferencedObject {
  /** Failure Reason (0008,1197), PS3.3 C.14.1.1. */
  failureReason: number;
}

/** One Storage Commitment result, as the PACS reported it. */
export interface CommitmentResult {
  transactionUid: string;
  /** Event Type ID: 1 when every object is committed, 2 when failures exist. */
  eventTypeId: number;
  committed: ReferencedObject[];
  failed: FailedObject[];
}

/** Failure Reason values of PS3.3 C.14.1.1. */
const failureReasonMeanings: Record<number, string> = {
  0x0110: 'processing failure',
  0x0112: 'no such object instance',
  0x0119: 'class / instance conflict',
  0x0122: 'referenced SOP class not supported',
  0x0131: 'duplicate transaction UID',
  0x0213: 'resource limitation',
};

/** Returns a reason for a failed commitment, such as "commitment failed: no such object instance (0x0112)". */
export function describeFailureReason(failureReason: number): string {
  const meaning = failureReasonMeanings[failureReason] ?? 'unknown failure reason';
  return `commitment failed: ${meaning} (${formatStatus(failureReason)})`;
}

/** Command elements of the N-ACTION request (PS3.7 10.3.4.1), without MessageID, which the association assigns. */
export function actionRequestCommand(): CommandElement[] {
  return [
    { tag: CommandTag.RequestedSopClassUid, vr: 'UI', value: storageCommitmentSopClassUid },
    { tag: CommandTag.CommandField, vr: 'US', value: CommandField.NActionRq },
    { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0x0000 },
    { tag: CommandTag.RequestedSopInstanceUid, vr: 'UI', value: storageCommitmentSopInstanceUid },
    { tag: CommandTag.ActionTypeId, vr: 'US', value: requestCommitmentActionTypeId },
  ];
}

/**
 * Command elements of the N-EVENT-REPORT response (PS3.7 10.3.1.2), without
 * MessageIDBeingRespondedTo, which the association adds. It names the
 * affected SOP class and instance: Orthanc 1.10 rejects a response without them.
 */
export function eventReportResponseCommand(status: number, eventTypeId: number | undefined): CommandElement[] {
  const elements: CommandElement[] = [
    { tag: CommandTag.AffectedSopClassUid, vr: 'UI', value: storageCommitmentSopClassUid },
    { tag: CommandTag.CommandField, vr: 'US', value: CommandField.NEventReportRsp },
    { tag: CommandTag.CommandDataSetType, vr: 'US', value: noDataSet },
    { tag: CommandTag.Status, vr: 'US', value: status },
    { tag: CommandTag.AffectedSopInstanceUid, vr: 'UI', value: storageCommitmentSopInstanceUid },
  ];
  if (eventTypeId !== undefined) elements.push({ tag: CommandTag.EventTypeId, vr: 'US', value: eventTypeId });
  return elements;
}

/** Encodes the N-ACTION data set (PS3.4 Table J.3-1) in the transfer syntax the peer accepted. */
export function encodeActionDataset(transactionUid: string, objects: ReferencedObject[], transferSyntaxUid: string): Buffer {
  const dataset = new Dataset(
    {
      TransactionUID: transactionUid,
      ReferencedSOPSequence: objects.map((object) => ({
        ReferencedSOPClassUID: object.sopClassUid,
        ReferencedSOPInstanceUID: object.sopInstanceUid,
      })),
    },
    transferSyntaxUid,
  );
  return dataset.getDenaturalizedDataset();
}

/** Decodes a received data set into dcmjs's named elements; undefined when it cannot be parsed. */
export function decodeDataset(encoded: Buffer, transferSyntaxUid: string): Record<string, unknown> | undefined {
  try {
    return new Dataset(encoded, transferSyntaxUid).getElements();
  } catch {
    // The caller answers with "invalid argument value", which is the whole diagnosis a peer needs.
    return undefined;
  }
}

/** Thrown for a report whose content breaks PS3.4 J.3.3; `status` is the N-EVENT-REPORT response status to send back. */
export class InvalidEventReportError extends Error {
  readonly status: number;

  constructor(message: string, status: number) {
    super(message);
    this.name = 'InvalidEventReportError';
    this.status = status;
  }
}

/** N-EVENT-REPORT response status "invalid argument value" (PS3.7 10.1.1.1.8). */
const invalidArgumentValue = 0x0115;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** dcmjs returns a sequence as an array of items; a single item is accepted as well. */
function sequenceItems(value: unknown): Record<string, unknown>[] {
  if (value === undefined || value === null) return [];
  const items = Array.isArray(value) ? (value as unknown[]) : [value];
  return items.filter(isRecord);
}

function readReference(item: Record<string, unknown>, sequence: string): ReferencedObject {
  const sopClassUid = item.ReferencedSOPClassUID;
  const sopInstanceUid = item.ReferencedSOPInstanceUID;
  if (typeof sopClassUid !== 'string' || typeof sopInstanceUid !== 'string' || !isValidUid(sopClassUid) || !isValidUid(sopInstanceUid)) {
    throw new InvalidEventReportError(`an item of ${sequence} has no valid Referenced SOP Class and Instance UIDs`, invalidArgumentValue);
  }
  return { sopClassUid, sopInstanceUid };
}

/**
 * Reads the N-EVENT-REPORT data set (PS3.4 Table J.3-2). Throws an
 * InvalidEventReportError when the Transaction UID or a reference is missing
 * or malformed. Messages name elements only, never their values.
 */
export function parseEventReport(eventTypeId: number, elements: unknown): CommitmentResult {
  if (!isRecord(elements)) throw new InvalidEventReportError('the report has no data set', invalidArgumentValue);
  const transactionUid = elements.TransactionUID;
  if (typeof transactionUid !== 'string' || !isValidUid(transactionUid)) {
    throw new InvalidEventReportError('the report has no valid Transaction UID', invalidArgumentValue);
  }

  const committed = sequenceItems(elements.ReferencedSOPSequence).map((item) => readReference(item, 'Referenced SOP Sequence'));
  const failed = sequenceItems(elements.FailedSOPSequence).map((item) => {
    const reference = readReference(item, 'Failed SOP Sequence');
    const failureReason = item.FailureReason;
    if (typeof failureReason !== 'number') {
      throw new InvalidEventReportError('an item of Failed SOP Sequence has no Failure Reason', invalidArgumentValue);
    }
    return { ...reference, failureReason };
  });
  return { transactionUid, eventTypeId, committed, failed };
}
