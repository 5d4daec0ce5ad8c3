import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { DestinationConfig } from '../profile/schema.js';
import type { SpooledObjectStream } from '../spool/types.js';
import { READ_THREAD_STOPPED } from '../spool/file-read-thread.js';
import { routeLibraryLog, verificationSopClassUid } from './dimse.js';
import { VERIFICATION_CONTEXT } from './service-tables.js';
import { cEchoRequest, cStoreRequest } from './dimse-command.js';
import { ScuAssociation, type DimseRequest, type DimseResponse, type ProposedContext, type QueuedRequest, type SendOptions } from './scu-association.js';
import {
  BatchResults,
  MAX_SHARED_BUFFER_BYTES,
  ReadBuffers,
  chooseTransferSyntax,
  eagerItem,
  encodeDataset,
  lazyItem,
  planContexts,
  startLoad,
  type BatchItem,
  type LoadOutcome,
} from './store-batch.js';
import { classifyStoreStatus, formatStatus, type StoreOutcome } from './store-status.js';
import { loadTlsSettings } from './transport.js';

export type { StoreOutcome } from './store-status.js';

/** The metadata recorded when an object was queued. */
export interface StoreObjectMetadata {
  /** Internal object id: safe to log. */
  id: string;
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
}

/** One DICOM object to send, with its Part 10 bytes. */
export interface StoreObject extends StoreObjectMetadata {
  part10: Buffer;
}

/**
 * One DICOM object whose Part 10 bytes are read when its turn comes, a few
 * objects ahead of the one being sent, so that reading overlaps the network
 * and nothing is read when the association cannot be opened.
 */
export interface LazyStoreObject extends StoreObjectMetadata {
  /** Size of the Part 10 file, when known before reading it. */
  bytes?: number;
  /**
   * Reads the Part 10 bytes. With `into` longer than `bytes`, it may read
   * into `into` and return a view of it. The caller reuses that buffer for a
   * later object only after this one was sent.
   */
  read: (into?: Buffer) => Promise<Buffer>;
  /** Opens the Part 10 file as a stream, for transfers that send files as they are (STOW-RS). */
  open?: () => Promise<SpooledObjectStream>;
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
  /** True when the peer accepted no presentation context that could carry the object. */
  noContext?: boolean;
  /**
   * True when the object never went out: the association ended or stopped
   * taking objects before its turn. The object goes back to the queue
   * without counting an attempt.
   */
  unsent?: boolean;
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
  /** Objects given with their bytes are checked before the association opens; lazy ones when read. */
  objects: Array<StoreObject | LazyStoreObject>;
  /**
   * Called with each object's result as soon as it is known, once per object,
   * so that the caller can record it while later objects are sent. When it
   * returns a promise after a response, the next object is sent once that
   * promise settles, which lets the caller bound its backlog of records.
   */
  onResult?: (result: StoreResult) => void | Promise<void>;
  /**
   * Called when the last object given so far is about to be sent and the
   * association is still usable, to send more objects over it. `canSend`
   * returns whether the association can carry an object. Objects returned go
   * after the others and get results like them. Returning none ends the association.
   */
  more?: (canSend: (object: StoreObjectMetadata) => boolean) => Promise<LazyStoreObject[]>;
}

export interface EchoResult {
  ok: boolean;
  reason?: string;
  /** Time from connect to the C-ECHO response, in milliseconds. */
  ms: number;
}

function toEndocapError(error: unknown): EndocapError {
  if (error instanceof EndocapError) return error;
  return new EndocapError(ErrorCodes.PACS_ABORTED, `unexpected error: ${errorMessage(error)}`, { retryable: true, cause: error });
}

function failureResult(id: string, error: EndocapError, associated: boolean): StoreResult {
  return { id, outcome: error.retryable ? 'transient' : 'permanent', reason: error.message, associated };
}

async function openAssociation(options: PeerOptions, contexts: ProposedContext[], log: Logger): Promise<ScuAssociation> {
  const { destination } = options;
  const tls = await loadTlsSettings(destination.tls);
  return ScuAssociation.open({
    host: destination.host,
    port: destination.port,
    callingAeTitle: options.callingAeTitle,
    calledAeTitle: destination.calledAeTitle,
    connectTimeoutMs: destination.connectTimeoutMs,
    associationTimeoutMs: destination.associationTimeoutMs,
    contexts,
    log,
    tls,
    signal: options.signal,
    onSocket: options.onSocket,
  });
}

/**
 * Sends every item over one open association and records a result for each.
 * The next items' data sets are read while the current one is sent. When the
 * items run out, `options.more` may add objects, which are appended to
 * `items` and `objects`.
 */
async function sendOverAssociation(
  association: ScuAssociation,
  items: BatchItem[],
  objects: Array<StoreObject | LazyStoreObject>,
  options: StoreObjectsOptions,
  results: BatchResults,
  log: Logger,
): Promise<void> {
  const { destination } = options;
  const accepted = association.acceptedContexts();
  const canSend = (object: StoreObjectMetadata): boolean => chooseTransferSyntax(object, accepted) !== undefined;
  const buffers = new ReadBuffers();
  const storeOptions = (object: StoreObjectMetadata): SendOptions => ({ timeoutMs: destination.requestTimeoutMs, label: `C-STORE of object ${object.id}` });
  // Gives back the buffer of an object that is not sent, once its read ended.
  const unsent = (load: Promise<LoadOutcome> | undefined): void => {
    void load?.then((outcome) => ('error' in outcome && readMayGoOn(outcome.error) ? buffers.drop(outcome.buffer) : buffers.give(outcome.buffer)));
  };
  let stopReason: string | undefined;
  let exhausted = options.more === undefined;
  // Loads started ahead, by item index. Small objects start in groups of
  // READ_AHEAD, which go to the spool's read thread in one message. A large
  // one (a clip) is read alone, so that at most one is held ahead.
  const ahead = new Map<number, Promise<LoadOutcome>>();
  const isSmall = (item: BatchItem): boolean => item.bytes !== undefined && item.bytes < MAX_SHARED_BUFFER_BYTES;
  const readAhead = (from: number): void => {
    for (let index = from; index < Math.min(items.length, from + READ_AHEAD); index += 1) {
      const item = items[index] as BatchItem;
      const small = isSmall(item);
      if (index > from && !small) break;
      ahead.set(index, startLoad(item, buffers));
      if (!small) break;
    }
  };
  readAhead(0);

  // The result of an object is passed on while the next object is in flight,
  // so that the next C-STORE goes out as soon as a response arrives. Results
  // still reach `onResult` in the order of the objects.
  let deferred: { object: StoreObjectMetadata; result: StoreResult } | undefined;
  const flush = async (): Promise<void> => {
    if (deferred === undefined) return;
    const { object, result } = deferred;
    deferred = undefined;
    await results.set(object, result);
  };
  const report = async (object: StoreObjectMetadata, result: StoreResult): Promise<void> => {
    await flush();
    await results.set(object, result);
  };

  // The next object is queued on the association while this one is in
  // flight, once its read ended, and goes out from the association's own
  // response handler when this one succeeds. Between a success and the next
  // request, the peer then waits for no other work of this process: the
  // result's bookkeeping, a journal write's completion, a garbage collection.
  const queuedSends = new Map<number, { queued: QueuedRequest; transferSyntaxUid: string }>();
  let turn = 0;
  const queueFollowing = (current: number): void => {
    const next = current + 1;
    const item = items[next];
    const loading = ahead.get(next);
    if (item === undefined || loading === undefined) return;
    void loading.then((outcome) => {
      // Too late once this turn ended: the object then goes the usual way.
      if (turn !== current || stopReason !== undefined || 'error' in outcome) return;
      const transferSyntaxUid = chooseTransferSyntax(item.object, accepted);
      if (transferSyntaxUid === undefined) return;
      try {
        const request = storeRequest(item.object, encodeDataset(item.object, outcome.dataset, transferSyntaxUid), transferSyntaxUid);
        const queued = association.sendAfterSuccess(request, storeOptions(item.object));
        if (queued !== undefined) queuedSends.set(next, { queued, transferSyntaxUid });
      } catch {
        // The object's own turn finds the same fault and reports it.
      }
    });
  };

  // More objects are requested while the last MORE_AHEAD objects given are
  // sent, so the first one taken is read and queued on the association in time.
  // `taking` is the request under way, if any.
  let taking: Promise<void> | undefined;
  const takeMore = (): void => {
    taking = appendMore(options, canSend, items, objects, log).then((added) => {
      exhausted = !added;
      taking = undefined;
    });
  };

  for (let index = 0; index < items.length; index += 1) {
    const item = items[index] as BatchItem;
    const { id } = item.object;
    turn = index;
    const loading = ahead.get(index);
    ahead.delete(index);
    const early = queuedSends.get(index);
    queuedSends.delete(index);
    if (taking === undefined && !exhausted && stopReason === undefined && association.usable && index + MORE_AHEAD >= items.length) takeMore();
    // Starts reading the next files unless they are read ahead already. Called once this object is on its way or skipped.
    // Behind a small object read ahead, the next group starts one object early, so that its first read has two
    // round trips to end in and the object can be queued on the association in time.
    // At the last object, it waits for the objects being taken, which go on the same association.
    const readFollowing = async (): Promise<void> => {
      if (index + 1 === items.length) await taking;
      if (stopReason !== undefined) return;
      const next = index + 1;
      const from = ahead.has(next) && isSmall(items[next] as BatchItem) ? next + 1 : next;
      if (!ahead.has(from)) readAhead(from);
    };

    let loaded: LoadOutcome | undefined;
    let transferSyntaxUid: string | undefined;
    let sending: Promise<{ response: DimseResponse } | { error: unknown }>;
    if (early?.queued.state === 'sent' && loading !== undefined) {
      // Already on its way, sent when the object before it succeeded.
      loaded = await loading;
      transferSyntaxUid = early.transferSyntaxUid;
      sending = early.queued.response.then(
        (response) => ({ response }),
        (error: unknown) => ({ error }),
      );
    } else {
      if (stopReason !== undefined || !loading) {
        unsent(loading);
        // Objects being taken get unsent results too, so this waits for the taking.
        // NOTE: that is the queue's work (a look and a journal write), usually milliseconds, but a
        // journal compaction or a slow disk makes a failed association, and Sender.stop(), wait longer.
        await taking;
        await report(item.object, { id, outcome: 'transient', reason: stopReason ?? 'not sent', associated: true, unsent: true });
        continue;
      }
      transferSyntaxUid = chooseTransferSyntax(item.object, accepted);
      if (transferSyntaxUid === undefined) {
        unsent(loading);
        await readFollowing();
        // Transient, so that the object stays queued and is retried with backoff.
        // The peer's configuration may change (a PACS that learns H.264, another
        // peer behind the same address), and an object set aside needs an operator.
        const reason = `no acceptable presentation context: the peer accepted none for SOP class ${item.object.sopClassUid} in transfer syntax ${item.object.transferSyntaxUid}`;
        log.warn({ objectId: id, transferSyntaxUid: item.object.transferSyntaxUid }, 'no acceptable presentation context for object');
        await report(item.object, { id, outcome: 'transient', reason, associated: true, noContext: true });
        continue;
      }

      // A read still under way: the result before it is passed on meanwhile,
      // and a read that hangs (a stalled disk) must not hold the association
      // after it ended, for example when the sender stops and aborts it.
      loaded = await Promise.race([loading, Promise.resolve(undefined)]);
      if (loaded === undefined) {
        await flush();
        loaded = await Promise.race([loading, association.whenClosed().then(() => undefined)]);
      }
      // An association that ended before this object's turn (a peer that
      // aborts right after accepting or after a response) never gets it.
      if (loaded === undefined || !association.usable) {
        unsent(loading);
        stopReason = `not sent: association with ${destination.host}:${destination.port} ended before the object was sent`;
        await taking;
        await report(item.object, { id, outcome: 'transient', reason: stopReason, associated: true, unsent: true });
        continue;
      }
      let dataset: Buffer;
      try {
        if ('error' in loaded) throw loaded.error;
        dataset = encodeDataset(item.object, loaded.dataset, transferSyntaxUid);
      } catch (error) {
        unsent(loading);
        await readFollowing();
        const failure = toEndocapError(error);
        log.warn({ objectId: id, reason: failure.message }, 'object could not be prepared for sending');
        await report(item.object, failureResult(id, failure, true));
        continue;
      }

      try {
        sending = association.send(storeRequest(item.object, dataset, transferSyntaxUid), storeOptions(item.object)).then(
          (response) => ({ response }),
          (error: unknown) => ({ error }),
        );
      } catch (error) {
        sending = Promise.resolve({ error });
      }
    }
    await readFollowing();
    await flush();
    queueFollowing(index);
    const answer = await sending;
    if ('error' in answer) {
      // The socket may still hold the data set until it closes.
      buffers.giveWhen(loaded.buffer, association.whenClosed());
      const failure = toEndocapError(answer.error);
      log.warn({ objectId: id, code: failure.code, reason: failure.message }, 'C-STORE failed');
      if (failure.code !== ErrorCodes.PACS_INVALID_OBJECT && failure.code !== ErrorCodes.PACS_NO_PRESENTATION_CONTEXT) {
        stopReason = `not sent: association with ${destination.host}:${destination.port} ended early (${failure.message})`;
      }
      await report(item.object, failureResult(id, failure, true));
      continue;
    }
    // A response means the socket wrote the whole data set, so its buffer may be read into again.
    buffers.give(loaded.buffer);
    const status = answer.response.getStatus();
    const { outcome, reason } = classifyStoreStatus(status);
    deferred = { object: item.object, result: { id, outcome, status, reason, associated: true } };
    if (outcome === 'stored') log.debug({ objectId: id, transferSyntaxUid }, 'C-STORE succeeded');
    else log.warn({ objectId: id, status, outcome, reason }, 'C-STORE response has a non-success status');
    if (outcome === 'transient') stopReason = `not sent: ${destination.host}:${destination.port} reported out of resources for an earlier object`;
  }

  await flush();
  await association.release(destination.associationTimeoutMs);
}

/** Builds the C-STORE request of an object whose data set is encoded in `transferSyntaxUid`. */
function storeRequest(object: StoreObjectMetadata, dataset: Buffer, transferSyntaxUid: string): DimseRequest {
  return { abstractSyntaxUid: object.sopClassUid, transferSyntaxUid, command: cStoreRequest(object.sopClassUid, object.sopInstanceUid), dataset };
}

/**
 * Small objects read ahead of the one being sent, requested together. On a
 * 2-core VM a trip to the read thread and back cost 60 to 100 us of CPU time,
 * and reading a 300 KB still from the page cache about 45 us. A group of
 * three makes one trip there instead of three. With the object being sent
 * and the one read before the group, a sender holds up to five shared buffers.
 */
const READ_AHEAD = 3;

/**
 * Objects still to send when more are requested: the last read-ahead group
 * and the object before it. A request at the last object would leave the
 * first one taken unread when its turn comes, so the peer would wait for that
 * read and for the journal writes of the batch taken, once per batch.
 */
export const MORE_AHEAD = READ_AHEAD + 1;

/**
 * True when a failed read may still write into its buffer: its read thread
 * stopped or closed in the middle of it. After any other error the read is over.
 */
function readMayGoOn(error: unknown): boolean {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 8; cause = cause.cause, depth += 1) {
    if ((cause as NodeJS.ErrnoException).code === READ_THREAD_STOPPED) return true;
  }
  return false;
}

/**
 * Asks `options.more` for objects to send over the same association and
 * appends them; resolves false when it gave none. Objects it gives that the
 * association cannot carry are sent anyway and fail as without a context.
 */
async function appendMore(
  options: StoreObjectsOptions,
  canSend: (object: StoreObjectMetadata) => boolean,
  items: BatchItem[],
  objects: Array<StoreObject | LazyStoreObject>,
  log: Logger,
): Promise<boolean> {
  let added: LazyStoreObject[];
  try {
    added = (await options.more?.(canSend)) ?? [];
  } catch (error) {
    log.error({ err: error }, 'taking more objects for the association failed');
    return false;
  }
  for (const object of added) {
    items.push(lazyItem(object));
    objects.push(object);
  }
  return added.length > 0;
}

/**
 * Sends objects with C-STORE over one association and returns one result per
 * object, in the order given. Never throws for network or peer failures: they
 * become `transient` or `permanent` results.
 */
export async function storeObjects(options: StoreObjectsOptions): Promise<StoreResult[]> {
  const { destination } = options;
  // More objects may join while the association is open; results follow this list.
  const objects = [...options.objects];
  const log = options.log.child({ component: 'store-scu', destination: destination.name });
  routeLibraryLog(log);
  const results = new BatchResults(options.onResult, log);
  const started = performance.now();

  const items: BatchItem[] = [];
  for (const object of objects) {
    if ('read' in object) {
      items.push(lazyItem(object));
      continue;
    }
    try {
      items.push(eagerItem(object));
    } catch (error) {
      const failure = toEndocapError(error);
      void results.set(object, { id: object.id, outcome: 'permanent', reason: failure.message });
      log.warn({ objectId: object.id, reason: failure.message }, 'object is not a valid Part 10 file');
    }
  }

  const { contexts, deferred } = planContexts(items);
  for (const item of deferred) {
    void results.set(item.object, { id: item.object.id, outcome: 'transient', reason: 'not sent: too many presentation contexts for one association', unsent: true });
  }
  const sendable = items.filter((item) => !deferred.includes(item));

  if (sendable.length > 0) {
    let association: ScuAssociation | undefined;
    try {
      association = await openAssociation(options, contexts, log);
    } catch (error) {
      const failure = toEndocapError(error);
      log.warn({ host: destination.host, port: destination.port, calledAeTitle: destination.calledAeTitle, code: failure.code, reason: failure.message }, 'association failed');
      // The caller aborted it (a sender that stops), so no object was tried.
      const aborted = options.signal?.aborted === true;
      for (const item of sendable) {
        const result = failureResult(item.object.id, failure, false);
        if (aborted) result.unsent = true;
        void results.set(item.object, result);
      }
    }
    if (association) await sendOverAssociation(association, sendable, objects, options, results, log);
  }

  const ordered = objects.map((object) => {
    const known = results.get(object);
    if (known) return known;
    const notSent: StoreResult = { id: object.id, outcome: 'transient', reason: 'not sent', unsent: true };
    void results.set(object, notSent);
    return notSent;
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
  const contexts = [VERIFICATION_CONTEXT];

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
      const request = { abstractSyntaxUid: verificationSopClassUid, command: cEchoRequest() };
      const { status } = await association.send(request, { timeoutMs: destination.requestTimeoutMs, label: 'C-ECHO' });
      result = status === 0 ? { ok: true, ms: elapsed() } : { ok: false, reason: `C-ECHO failed with status ${formatStatus(status)}`, ms: elapsed() };
    } catch (error) {
      result = { ok: false, reason: toEndocapError(error).message, ms: elapsed() };
    }
  }
  await association.release(destination.associationTimeoutMs);
  log.info({ ok: result.ok, reason: result.reason, ms: result.ms }, 'C-ECHO finished');
  return result;
}
