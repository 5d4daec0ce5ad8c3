/**
 * Classification of STOW-RS HTTP responses (PS3.18 10.5.3), in the terms the
 * C-STORE senders use: per object stored, warning, transient or permanent,
 * plus what the request as a whole means for the destination.
 */

import { classifyInstanceReport, type ObjectVerdict, type StowReport } from './stow-response.js';

/** A fault that needs a person, raised as an alarm until a later request succeeds. */
export interface DestinationFault {
  kind: 'credentials' | 'configuration';
  reason: string;
}

export interface RequestVerdict {
  /** One verdict per object of the request, in request order. */
  objects: ObjectVerdict[];
  /** The server rejected the request as a whole: each object goes again alone, to learn which one it rejects. */
  retryEachAlone: boolean;
  /** The rest of the batch waits, because sending it now would get the same response. */
  stopBatch: boolean;
  fault?: DestinationFault;
  /** False when the DICOMweb service behind the URL is not reachable, for the link state and its alarm. */
  reachable: boolean;
}

interface RequestFacts {
  status: number;
  report: StowReport;
  /** SOP Instance UIDs of the request's objects, in request order. */
  sopInstanceUids: string[];
  /** Destination name and request size, for reasons an operator acts on. */
  destination: string;
  requestBytes: number;
  authenticated: boolean;
}

function allObjects(facts: RequestFacts, verdict: ObjectVerdict): ObjectVerdict[] {
  return facts.sopInstanceUids.map(() => ({ ...verdict }));
}

function transientVerdict(facts: RequestFacts, reason: string, extra: Partial<RequestVerdict> = {}): RequestVerdict {
  return { objects: allObjects(facts, { outcome: 'transient', reason }), retryEachAlone: false, stopBatch: true, reachable: true, ...extra };
}

/**
 * 200 and 202: instances the response lists get their own outcome. With 200
 * an unlisted instance counts as stored. With 202 it waits for another try,
 * because the server stored some instances and did not say which.
 */
function judgeSuccess(facts: RequestFacts): RequestVerdict {
  const { status, report } = facts;
  const objects = facts.sopInstanceUids.map((uid): ObjectVerdict => {
    const instance = report?.get(uid);
    if (instance) return classifyInstanceReport(instance, status);
    if (status === 200) return { outcome: 'stored', reason: 'stored' };
    const explanation = report === undefined ? 'without a readable DICOM JSON response' : 'but the response does not name this object';
    return { outcome: 'transient', reason: `server answered HTTP 202 (some instances failed) ${explanation}` };
  });
  return { objects, retryEachAlone: false, stopBatch: false, reachable: true };
}

/**
 * 400 and 409: the server stored nothing. Instances with a FailureReason get
 * it. When the response names none and the request held several objects,
 * each goes again alone, so that one bad object does not set aside the others.
 */
function judgeRejection(facts: RequestFacts, meaning: string): RequestVerdict {
  const { status, report } = facts;
  const named = facts.sopInstanceUids.some((uid) => report?.get(uid)?.kind === 'failed');
  if (!named && facts.sopInstanceUids.length > 1) {
    return { ...transientVerdict(facts, `server answered HTTP ${status} (${meaning}) for a request of several objects`), retryEachAlone: true, stopBatch: false };
  }
  const objects = facts.sopInstanceUids.map((uid): ObjectVerdict => {
    const instance = report?.get(uid);
    if (instance?.kind === 'failed') return classifyInstanceReport(instance, status);
    if (named) return { outcome: 'transient', reason: `server answered HTTP ${status} (${meaning}) because of another object of the request` };
    return { outcome: 'permanent', reason: `server rejected the object: HTTP ${status} (${meaning})` };
  });
  return { objects, retryEachAlone: false, stopBatch: false, reachable: true };
}

/** 413: the server's request size limit. A single object above it can never be stored there. */
function judgeTooLarge(facts: RequestFacts): RequestVerdict {
  if (facts.sopInstanceUids.length > 1) {
    return { ...transientVerdict(facts, 'server answered HTTP 413 (payload too large) for a request of several objects'), retryEachAlone: true, stopBatch: false };
  }
  const reason =
    `server answered HTTP 413 (payload too large) to a request of ${facts.requestBytes} bytes: ` +
    `raise the server's request size limit, or set maxObjectBytes of destination ${facts.destination} below it so that clips are split`;
  return {
    objects: allObjects(facts, { outcome: 'permanent', reason }),
    retryEachAlone: false,
    stopBatch: false,
    fault: { kind: 'configuration', reason },
    reachable: true,
  };
}

function judgeCredentials(facts: RequestFacts): RequestVerdict {
  const { status, destination } = facts;
  const meaning = status === 401 ? 'unauthorized' : 'forbidden';
  const fix = facts.authenticated ? `check the credential file of destination ${destination}` : `set auth for destination ${destination}`;
  const reason = `credentials rejected: server answered HTTP ${status} (${meaning}); ${fix}`;
  return transientVerdict(facts, reason, { fault: { kind: 'credentials', reason } });
}

/** Responses that mean the URL or the server's setup is wrong: nothing is set aside, and a person is alerted. */
function judgeMisconfigured(facts: RequestFacts): RequestVerdict {
  const { status, destination } = facts;
  const reason = `server answered HTTP ${status} to STOW-RS: check url of destination ${destination} and that the server accepts application/dicom`;
  return transientVerdict(facts, reason, { fault: { kind: 'configuration', reason } });
}

/** Maps a STOW-RS response to per-object outcomes. */
export function judgeResponse(facts: RequestFacts): RequestVerdict {
  const { status } = facts;
  if (status === 200 || status === 202) return judgeSuccess(facts);
  if (status === 400) return judgeRejection(facts, 'bad request');
  if (status === 409) return judgeRejection(facts, 'conflict');
  if (status === 413) return judgeTooLarge(facts);
  if (status === 401 || status === 403) return judgeCredentials(facts);
  if (status === 408 || status === 429) return transientVerdict(facts, `server answered HTTP ${status} (${status === 408 ? 'request timeout' : 'too many requests'})`);
  // A gateway that cannot reach the service behind it: for this box the service is down.
  if (status === 502 || status === 503 || status === 504) return transientVerdict(facts, `server answered HTTP ${status}: service unavailable`, { reachable: false });
  if (status >= 500 && status <= 599) return transientVerdict(facts, `server answered HTTP ${status} (server error)`);
  // Redirects (not followed, because the body is streamed once), 404, 405, 415 and other codes.
  return judgeMisconfigured(facts);
}
