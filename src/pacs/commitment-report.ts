import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import {
  InvalidEventReportError,
  commitmentEventTypes,
  parseEventReport,
  storageCommitmentSopClassUid,
  storageCommitmentSopInstanceUid,
} from './commitment-messages.js';
import type { CommitmentResultSink, ResultOrigin } from './commitment-tracker.js';
import { formatStatus } from './store-status.js';

/** An N-EVENT-REPORT request as received, whichever side of the association it arrived on. */
export interface ReceivedEventReport {
  affectedSopClassUid: string | undefined;
  affectedSopInstanceUid: string | undefined;
  eventTypeId: number | undefined;
  /** dcmjs's named elements of the data set; undefined when there was none or it could not be parsed. */
  elements: Record<string, unknown> | undefined;
}

/** N-EVENT-REPORT response statuses (PS3.7 10.1.1.1.8). */
export const eventReportStatus = {
  success: 0x0000,
  processingFailure: 0x0110,
  noSuchSopInstance: 0x0112,
  noSuchEventType: 0x0113,
  noSuchSopClass: 0x0118,
} as const;

function checkHeader(report: ReceivedEventReport): number {
  if (report.affectedSopClassUid !== storageCommitmentSopClassUid) {
    throw new InvalidEventReportError('the report is not for the Storage Commitment Push Model SOP Class', eventReportStatus.noSuchSopClass);
  }
  if (report.affectedSopInstanceUid !== storageCommitmentSopInstanceUid) {
    throw new InvalidEventReportError('the report does not name the well-known Storage Commitment SOP Instance', eventReportStatus.noSuchSopInstance);
  }
  const eventTypeId = report.eventTypeId;
  if (eventTypeId !== commitmentEventTypes.allCommitted && eventTypeId !== commitmentEventTypes.failuresExist) {
    throw new InvalidEventReportError(`the report has event type ${String(eventTypeId)}, expected 1 or 2`, eventReportStatus.noSuchEventType);
  }
  return eventTypeId;
}

/**
 * Handles one Storage Commitment N-EVENT-REPORT request and returns the
 * status of the response to send. A result for an unknown transaction gets
 * success, as PS3.4 J.3.3 expects, and changes nothing. A malformed report
 * gets the matching failure status. A result that could not be recorded gets
 * processing failure, so that the PACS may report it again. Never throws.
 */
export async function handleEventReport(report: ReceivedEventReport, sink: CommitmentResultSink, origin: ResultOrigin, log: Logger): Promise<number> {
  try {
    const eventTypeId = checkHeader(report);
    const result = parseEventReport(eventTypeId, report.elements);
    await sink.applyResult(result, origin);
    return eventReportStatus.success;
  } catch (error) {
    const status = error instanceof InvalidEventReportError ? error.status : eventReportStatus.processingFailure;
    log.warn({ origin, status: formatStatus(status), reason: errorMessage(error) }, 'commitment result not accepted');
    return status;
  }
}
