/**
 * Reading of STOW-RS responses (PS3.18 10.5.3). The response body is a DICOM
 * JSON data set (PS3.18 F.2) with two sequences that name instances by SOP
 * Instance UID: FailedSOPSequence (0008,1198), whose items carry a
 * FailureReason (0008,1197), and ReferencedSOPSequence (0008,1199), whose
 * items may carry a WarningReason (0008,1196). Both reasons are C-STORE status
 * codes, so they are classified like DIMSE responses. Nothing else in the body
 * is read: it may contain patient data.
 */

import { classifyStoreStatus, type StoreOutcome } from '../pacs/store-status.js';

const failedSopSequence = '00081198';
const referencedSopSequence = '00081199';
const referencedSopInstanceUid = '00081155';
const failureReason = '00081197';
const warningReason = '00081196';

/** Outcome of one instance as the response reports it. An absent code means the server sent none. */
export type InstanceReport = { kind: 'failed'; code?: number } | { kind: 'stored'; warningCode?: number };

/** Instance reports by SOP Instance UID, or undefined when the body is not a DICOM JSON data set. */
export type StowReport = Map<string, InstanceReport> | undefined;

type JsonDataset = Record<string, unknown>;

function isObject(value: unknown): value is JsonDataset {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Returns the Value array of an attribute, or an empty array when it is absent or malformed. */
function values(dataset: JsonDataset, tag: string): unknown[] {
  const attribute = dataset[tag];
  if (!isObject(attribute)) return [];
  const value = attribute['Value'];
  return Array.isArray(value) ? value : [];
}

function firstCode(dataset: JsonDataset, tag: string): number | undefined {
  const value = values(dataset, tag)[0];
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffff ? value : undefined;
}

function firstString(dataset: JsonDataset, tag: string): string | undefined {
  const value = values(dataset, tag)[0];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * Parses a STOW-RS response body. Servers send either one data set or, like
 * some versions of the Orthanc plugin, an array holding one; both are read.
 */
export function parseStowResponse(body: Buffer, contentType: string | undefined): StowReport {
  if (body.length === 0 || !/json/i.test(contentType ?? '')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  const dataset = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!isObject(dataset)) return undefined;

  const report = new Map<string, InstanceReport>();
  for (const item of values(dataset, referencedSopSequence)) {
    if (!isObject(item)) continue;
    const uid = firstString(item, referencedSopInstanceUid);
    if (uid === undefined) continue;
    const warningCode = firstCode(item, warningReason);
    report.set(uid, warningCode === undefined ? { kind: 'stored' } : { kind: 'stored', warningCode });
  }
  // A failure overrides a reference to the same instance.
  for (const item of values(dataset, failedSopSequence)) {
    if (!isObject(item)) continue;
    const uid = firstString(item, referencedSopInstanceUid);
    if (uid === undefined) continue;
    const code = firstCode(item, failureReason);
    report.set(uid, code === undefined ? { kind: 'failed' } : { kind: 'failed', code });
  }
  return report;
}

/** Outcome of one object, with its reason and the DICOM status code when the server sent one. */
export interface ObjectVerdict {
  outcome: StoreOutcome;
  reason: string;
  status?: number;
}

/**
 * Classifies what the server reported for one instance. A FailureReason of
 * 0x0000 is not a failure code, so such an item counts as an unexplained failure.
 */
export function classifyInstanceReport(report: InstanceReport, httpStatus: number): ObjectVerdict {
  const suffix = ` (STOW-RS HTTP ${httpStatus})`;
  if (report.kind === 'stored') {
    if (report.warningCode === undefined || report.warningCode === 0) return { outcome: 'stored', reason: 'stored' };
    const { outcome, reason } = classifyStoreStatus(report.warningCode);
    // A WarningReason always means the instance was stored, whatever the code.
    return { outcome: outcome === 'stored' ? 'stored' : 'warning', reason: reason + suffix, status: report.warningCode };
  }
  if (report.code === undefined || report.code === 0) {
    return { outcome: 'permanent', reason: `server rejected the object without a failure reason${suffix}` };
  }
  const { outcome, reason } = classifyStoreStatus(report.code);
  return { outcome, reason: `${reason.replace(/^peer /, 'server ')}${suffix}`, status: report.code };
}
