import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { DestinationConfig } from '../profile/schema.js';
import {
  CEchoRequest,
  CStoreRequest,
  Dataset,
  EncodedDataset,
  Transcoding,
  TransferSyntax,
  routeLibraryLog,
  uncompressedTransferSyntaxes,
  verificationSopClassUid,
  type DatasetInstance,
} from './dimse.js';
import { splitPart10 } from './part10.js';
import { ScuAssociation, type AcceptedContext, type ProposedContext } from './scu-association.js';
import { classifyStoreStatus, formatStatus, type StoreOutcome } from './store-status.js';

export type { StoreOutcome } from './store-status.js';

/** One DICOM object to send: its Part 10 bytes and the metadata recorded when it was queued. */
export interface StoreObject {
  /** Internal object id: safe to log. */
  id: string;
  part10: Buffer;
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
}

export interface StoreResult {
  id: string;
  /** `warning` counts as stored. `transient` is worth retrying, `permanent` is not. */
  outcome: StoreOutcome;
  /** DIMSE status of the C-STORE response, when one arrived. */
  status?: number;
  /** Why, without patient data: host, port, AE titles, status codes and internal ids only. */
  reason: string;
  /**
   * True when the batch's association was established, false when connecting
   * or negotiating failed, absent when the object never got that far (invalid
   * object, or no room among the presentation contexts).
   */
  associated?: boolean;
}

interface PeerOptions {
  destination: DestinationConfig;
  callingAeTitle: string;
  log: Logger;
  /** Aborts the association. Objects without a response fail as transient. */
  signal?: AbortSignal;
  /** Called with the TCP socket right after it is created, for diagnostics and tests. */
  onSocket?: (socket: Socket) => void;
}

export interface StoreObjectsOptions extends PeerOptions {
  objects: StoreObject[];
}

export interface EchoResult {
  ok: boolean;
  reason?: string;
  /** Time from connect to the C-ECHO response, in milliseconds. */
  ms: number;
}

/** Presentation context IDs are odd numbers from 1 to 255 (PS3.8 9.3.2.2). */
const maxPresentationContexts = 128;

const littleEndianFallback = [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian];

interface PreparedObject {
  object: StoreObject;
  /** Encoded data set from the Part 10 file, in `object.transferSyntaxUid`. */
  dataset: Buffer;
}

interface ContextPlan {
  contexts: ProposedContext[];
  /** Objects that did not fit into one association's presentation contexts. */
  deferred: PreparedObject[];
}

function isUncompressed(transferSyntaxUid: string): boolean {
  return uncompressedTransferSyntaxes.has(transferSyntaxUid);
}

function prepare(object: StoreObject): PreparedObject {
  const file = splitPart10(object.part10);
  const mismatched: string[] = [];
  if (file.transferSyntaxUid !== object.transferSyntaxUid) mismatched.push('transfer syntax');
  if (file.sopClassUid !== object.sopClassUid) mismatched.push('SOP class');
  if (file.sopInstanceUid !== object.sopInstanceUid) mismatched.push('SOP instance');
  if (mismatched.length > 0) {
    throw new EndocapError(ErrorCodes.PACS_INVALID_OBJECT, `File Meta Information differs from the queued metadata: ${mismatched.join(', ')}`);
  }
  return { object, dataset: file.dataset };
}

/**
 * Proposes one presentation context per SOP class and transfer syntax, plus
 * Explicit and Implicit VR Little Endian for SOP classes with uncompressed
 * objects. Compressed objects get no fallback: they are sent as they are or not at all.
 */
function planContexts(objects: PreparedObject[]): ContextPlan {
  const contexts: ProposedContext[] = [];
  const proposed = new Set<string>();
  const deferred: PreparedObject[] = [];
  for (const item of objects) {
    const { sopClassUid, transferSyntaxUid } = item.object;
    const wanted = new Map<string, ProposedContext>([
      [`${sopClassUid} ${transferSyntaxUid}`, { abstractSyntaxUid: sopClassUid, transferSyntaxUids: [transferSyntaxUid] }],
    ]);
    if (isUncompressed(transferSyntaxUid)) {
      wanted.set(`${sopClassUid} fallback`, { abstractSyntaxUid: sopClassUid, transferSyntaxUids: littleEndianFallback });
    }
    const added = [...wanted].filter(([key]) => !proposed.has(key));
    if (contexts.length + added.length > maxPresentationContexts) {
      deferred.push(item);
      continue;
    }
    for (const [key, context] of added) {
      proposed.add(key);
      contexts.push(context);
    }
  }
  return { contexts, deferred };
}

/** Picks the transfer syntax to send in: the object's own, else, for uncompressed data, any accepted little endian one. */
function chooseTransferSyntax(object: StoreObject, accepted: AcceptedContext[]): string | undefined {
  const forClass = accepted.filter((context) => context.abstractSyntaxUid === object.sopClassUid);
  if (forClass.some((context) => context.transferSyntaxUid === object.transferSyntaxUid)) return object.transferSyntaxUid;
  if (!isUncompressed(object.transferSyntaxUid)) return undefined;
  return forClass.find((context) => isUncompressed(context.transferSyntaxUid))?.transferSyntaxUid;
}

/**
 * Builds the data set for the request so that its transfer syntax equals the
 * accepted one: the library then picks that context and sends the bytes without
 * converting them.
 */
function buildDataset(item: PreparedObject, transferSyntaxUid: string): DatasetInstance {
  const { object } = item;
  if (transferSyntaxUid === object.transferSyntaxUid) {
    return new EncodedDataset(item.dataset, transferSyntaxUid, object.sopClassUid, object.sopInstanceUid);
  }
  try {
    return Transcoding.transcodeDataset(new Dataset(item.dataset, object.transferSyntaxUid), transferSyntaxUid);
  } catch (error) {
    throw new EndocapError(ErrorCodes.PACS_INVALID_OBJECT, `data set could not be converted to transfer syntax ${transferSyntaxUid}`, { cause: error });
  }
}

function toEndocapError(error: unknown): EndocapError {
  if (error instanceof EndocapError) return error;
  return new EndocapError(ErrorCodes.PACS_ABORTED, `unexpected error: ${errorMessage(error)}`, { retryable: true, cause: error });
}

function failureResult(id: string, error: EndocapError, associated: boolean): StoreResult {
  return { id, outcome: error.retryable ? 'transient' : 'permanent', reason: error.message, associated };
}

function openAssociation(options: PeerOptions, contexts: ProposedContext[], log: Logger): Promise<ScuAssociation> {
  const { destination } = options;
  return ScuAssociation.open({
    host: destination.host,
    port: destination.port,
    callingAeTitle: options.callingAeTitle,
    calledAeTitle: destination.calledAeTitle,
    connectTimeoutMs: destination.connectTimeoutMs,
    associationTimeoutMs: destination.associationTimeoutMs,
    contexts,
    log,
    signal: options.signal,
    onSocket: options.onSocket,
  });
}

/** Sends every prepared object over one open association and records a result for each. */
async function sendOverAssociation(
  association: ScuAssociation,
  items: PreparedObject[],
  options: StoreObjectsOptions,
  results: Map<StoreObject, StoreResult>,
  log: Logger,
): Promise<void> {
  const { destination } = options;
  const accepted = association.acceptedContexts();
  let stopReason: string | undefined;

  for (const item of items) {
    const { id } = item.object;
    if (stopReason !== undefined) {
      results.set(item.object, { id, outcome: 'transient', reason: stopReason, associated: true });
      continue;
    }
    const transferSyntaxUid = chooseTransferSyntax(item.object, accepted);
    if (transferSyntaxUid === undefined) {
      results.set(item.object, { id, outcome: 'permanent', reason: 'no acceptable presentation context', associated: true });
      log.warn({ objectId: id, transferSyntaxUid: item.object.transferSyntaxUid }, 'no acceptable presentation context for object');
      continue;
    }

    let request: InstanceType<typeof CStoreRequest>;
    try {
      request = new CStoreRequest(buildDataset(item, transferSyntaxUid));
      request.setAffectedSopClassUid(item.object.sopClassUid);
      request.setAffectedSopInstanceUid(item.object.sopInstanceUid);
    } catch (error) {
      const failure = toEndocapError(error);
      results.set(item.object, { id, outcome: 'permanent', reason: failure.message, associated: true });
      log.warn({ objectId: id, reason: failure.message }, 'object could not be prepared for sending');
      continue;
    }

    try {
      const response = await association.send(request, destination.requestTimeoutMs, `C-STORE of object ${id}`);
      const status = response.getStatus();
      const { outcome, reason } = classifyStoreStatus(status);
      results.set(item.object, { id, outcome, status, reason, associated: true });
      if (outcome === 'stored') log.debug({ objectId: id, transferSyntaxUid }, 'object stored');
      else log.warn({ objectId: id, status, outcome, reason }, 'C-STORE response has a non-success status');
      if (outcome === 'transient') stopReason = `not sent: ${destination.host}:${destination.port} reported out of resources for an earlier object`;
    } catch (error) {
      const failure = toEndocapError(error);
      results.set(item.object, failureResult(id, failure, true));
      log.warn({ objectId: id, code: failure.code, reason: failure.message }, 'C-STORE failed');
      if (failure.code !== ErrorCodes.PACS_INVALID_OBJECT) {
        stopReason = `not sent: association with ${destination.host}:${destination.port} ended early (${failure.message})`;
      }
    }
  }

  await association.release(destination.associationTimeoutMs);
}

/**
 * Sends objects with C-STORE over one association and returns one result per
 * object, in the order given. Never throws for network or peer failures: they
 * become `transient` or `permanent` results.
 */
export async function storeObjects(options: StoreObjectsOptions): Promise<StoreResult[]> {
  const { destination, objects } = options;
  const log = options.log.child({ component: 'store-scu', destination: destination.name });
  routeLibraryLog(log);
  const results = new Map<StoreObject, StoreResult>();
  const started = performance.now();

  const prepared: PreparedObject[] = [];
  for (const object of objects) {
    try {
      prepared.push(prepare(object));
    } catch (error) {
      const failure = toEndocapError(error);
      results.set(object, { id: object.id, outcome: 'permanent', reason: failure.message });
      log.warn({ objectId: object.id, reason: failure.message }, 'object is not a valid Part 10 file');
    }
  }

  const { contexts, deferred } = planContexts(prepared);
  for (const item of deferred) {
    results.set(item.object, { id: item.object.id, outcome: 'transient', reason: 'not sent: too many presentation contexts for one association' });
  }
  const sendable = prepared.filter((item) => !deferred.includes(item));

  if (sendable.length > 0) {
    let association: ScuAssociation | undefined;
    try {
      association = await openAssociation(options, contexts, log);
    } catch (error) {
      const failure = toEndocapError(error);
      log.warn({ host: destination.host, port: destination.port, calledAeTitle: destination.calledAeTitle, code: failure.code, reason: failure.message }, 'association failed');
      for (const item of sendable) results.set(item.object, failureResult(item.object.id, failure, false));
    }
    if (association) await sendOverAssociation(association, sendable, options, results, log);
  }

  const ordered = objects.map((object) => {
    return results.get(object) ?? { id: object.id, outcome: 'transient' as const, reason: 'not sent' };
  });
  const count = (outcome: StoreOutcome): number => ordered.filter((result) => result.outcome === outcome).length;
  log.info(
    { objects: objects.length, stored: count('stored'), warning: count('warning'), transient: count('transient'), permanent: count('permanent'), ms: Math.round(performance.now() - started) },
    'store batch finished',
  );
  return ordered;
}

/** Sends a C-ECHO (Verification, PS3.4 A.4) to the destination and reports whether it succeeded. Never throws. */
export async function echo(options: PeerOptions): Promise<EchoResult> {
  const { destination } = options;
  const log = options.log.child({ component: 'store-scu', destination: destination.name });
  routeLibraryLog(log);
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const contexts = [{ abstractSyntaxUid: verificationSopClassUid, transferSyntaxUids: littleEndianFallback }];

  let association: ScuAssociation;
  try {
    association = await openAssociation(options, contexts, log);
  } catch (error) {
    return { ok: false, reason: toEndocapError(error).message, ms: elapsed() };
  }

  let result: EchoResult;
  if (association.acceptedContexts().length === 0) {
    result = { ok: false, reason: 'no acceptable presentation context', ms: elapsed() };
  } else {
    try {
      const status = (await association.send(new CEchoRequest(), destination.requestTimeoutMs, 'C-ECHO')).getStatus();
      result = status === 0 ? { ok: true, ms: elapsed() } : { ok: false, reason: `C-ECHO failed with status ${formatStatus(status)}`, ms: elapsed() };
    } catch (error) {
      result = { ok: false, reason: toEndocapError(error).message, ms: elapsed() };
    }
  }
  await association.release(destination.associationTimeoutMs);
  log.info({ ok: result.ok, reason: result.reason, ms: result.ms }, 'C-ECHO finished');
  return result;
}
