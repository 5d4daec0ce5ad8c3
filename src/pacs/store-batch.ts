import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import { isShared } from '../spool/file-read-thread.js';
import type { Logger } from '../log.js';
import { Dataset, Transcoding, uncompressedTransferSyntaxes } from './dimse.js';
import { splitPart10 } from './part10.js';
import type { AcceptedContext, ProposedContext } from './scu-association.js';
import { MAX_PRESENTATION_CONTEXTS, storageContexts } from './service-tables.js';
import type { LazyStoreObject, StoreObject, StoreObjectMetadata, StoreObjectsOptions, StoreResult } from './store-scu.js';

/** One object of a batch: its metadata and how to get its encoded data set. */
export interface BatchItem {
  object: StoreObjectMetadata;
  /** Size of the Part 10 file when known before reading it. */
  bytes?: number;
  /**
   * Resolves with the data set of the Part 10 file, in `object.transferSyntaxUid`;
   * rejects with a reason for the result. The file may be read into `into`.
   */
  load: (into?: Buffer) => Promise<Buffer>;
}

function isUncompressed(transferSyntaxUid: string): boolean {
  return uncompressedTransferSyntaxes.has(transferSyntaxUid);
}

/** Returns the data set of a Part 10 file after checking its File Meta Information against the queued metadata. */
function datasetOf(object: StoreObjectMetadata, part10: Buffer): Buffer {
  const file = splitPart10(part10);
  const mismatched: string[] = [];
  if (file.transferSyntaxUid !== object.transferSyntaxUid) mismatched.push('transfer syntax');
  if (file.sopClassUid !== object.sopClassUid) mismatched.push('SOP class');
  if (file.sopInstanceUid !== object.sopInstanceUid) mismatched.push('SOP instance');
  if (mismatched.length > 0) {
    throw new EndocapError(ErrorCodes.PACS_INVALID_OBJECT, `File Meta Information differs from the queued metadata: ${mismatched.join(', ')}`);
  }
  return file.dataset;
}

/** Checks an object given with its bytes at once, so that an invalid one fails before any association. */
export function eagerItem(object: StoreObject): BatchItem {
  const dataset = datasetOf(object, object.part10);
  return { object, load: () => Promise.resolve(dataset) };
}

/**
 * Wraps an object read on demand. A read error becomes a permanent result
 * when the file is gone or the error is not worth retrying, else a transient one.
 */
export function lazyItem(object: LazyStoreObject): BatchItem {
  const item: BatchItem = {
    object,
    load: async (into) => {
      let part10: Buffer;
      try {
        part10 = await object.read(into);
      } catch (error) {
        const permanent = (error as NodeJS.ErrnoException).code === 'ENOENT' || (error instanceof EndocapError && !error.retryable);
        throw new EndocapError(ErrorCodes.SPOOL_CORRUPT_ENTRY, `reading the queued object failed: ${errorMessage(error)}`, { retryable: !permanent, cause: error });
      }
      return datasetOf(object, part10);
    },
  };
  if (object.bytes !== undefined) item.bytes = object.bytes;
  return item;
}

export interface ContextPlan {
  contexts: ProposedContext[];
  /** Items that did not fit into one association's presentation contexts. */
  deferred: BatchItem[];
}

/**
 * Proposes the storage contexts of every object (`storageContexts`), each
 * distinct context once, in the order of the objects. Objects whose contexts
 * do not fit into one association are deferred.
 */
export function planContexts(items: BatchItem[]): ContextPlan {
  const contexts: ProposedContext[] = [];
  const proposed = new Set<string>();
  const deferred: BatchItem[] = [];
  for (const item of items) {
    const needed = new Map<string, ProposedContext>();
    for (const context of storageContexts(item.object)) needed.set(`${context.abstractSyntaxUid} ${context.transferSyntaxUids.join(',')}`, context);
    const added = [...needed].filter(([key]) => !proposed.has(key));
    if (contexts.length + added.length > MAX_PRESENTATION_CONTEXTS) {
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
export function chooseTransferSyntax(object: StoreObjectMetadata, accepted: AcceptedContext[]): string | undefined {
  const forClass = accepted.filter((context) => context.abstractSyntaxUid === object.sopClassUid);
  if (forClass.some((context) => context.transferSyntaxUid === object.transferSyntaxUid)) return object.transferSyntaxUid;
  if (!isUncompressed(object.transferSyntaxUid)) return undefined;
  return forClass.find((context) => isUncompressed(context.transferSyntaxUid))?.transferSyntaxUid;
}

/**
 * Returns the encoded data set in the accepted transfer syntax. When that is
 * the object's own syntax, these are the bytes of the Part 10 file as they are,
 * so no object is parsed on the way out. Otherwise the data set is converted
 * between uncompressed syntaxes.
 */
export function encodeDataset(object: StoreObjectMetadata, dataset: Buffer, transferSyntaxUid: string): Buffer {
  if (transferSyntaxUid === object.transferSyntaxUid) return dataset;
  try {
    const converted = Transcoding.transcodeDataset(new Dataset(dataset, object.transferSyntaxUid), transferSyntaxUid);
    return converted.getDenaturalizedDataset();
  } catch (error) {
    throw new EndocapError(ErrorCodes.PACS_INVALID_OBJECT, `data set could not be converted to transfer syntax ${transferSyntaxUid}`, { cause: error });
  }
}

/** Objects up to this size are read into reused buffers; larger ones, clips mostly, get a buffer of their own. */
export const MAX_REUSED_BUFFER_BYTES = 8 * 1024 * 1024;
/** Free buffers of one association kept: one object is sent while the next one is read, so two cover the steady state. */
const FREE_BUFFERS_KEPT = 2;
const MIN_BUFFER_BYTES = 64 * 1024;
/** Largest buffer in shared memory: stills fit, larger objects use buffers of their association. */
export const MAX_SHARED_BUFFER_BYTES = 2 * 1024 * 1024;
/**
 * Shared buffers of one size that exist at a time: five per sender (one
 * object sent, one read ahead and a group of three being read) for two
 * senders at once, and two more.
 */
export const SHARED_BUFFERS_PER_SIZE = 12;

/**
 * Buffers in shared memory, which the spool's read thread fills, kept for the
 * life of the process and reused by every association. The read thread gets
 * a reference to a buffer with each read and holds it until its own garbage
 * collection, which may be far off: a new buffer per association would pile
 * up there. So the number of buffers of each size is bounded, and a buffer
 * is dropped only when it may still be written to.
 */
class SharedBufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private readonly existing = new Map<number, number>();

  /** Returns a free buffer of this length, or a new one while fewer than the bound exist, else undefined. */
  take(length: number): Buffer | undefined {
    const reused = this.free.get(length)?.pop();
    if (reused !== undefined) return reused;
    const count = this.existing.get(length) ?? 0;
    if (count >= SHARED_BUFFERS_PER_SIZE) return undefined;
    this.existing.set(length, count + 1);
    return Buffer.from(new SharedArrayBuffer(length));
  }

  give(buffer: Buffer): void {
    const free = this.free.get(buffer.length) ?? [];
    free.push(buffer);
    this.free.set(buffer.length, free);
  }

  /** Forgets a buffer that will not come back, so that another of its length may be made. */
  drop(buffer: Buffer): void {
    this.existing.set(buffer.length, Math.max(0, (this.existing.get(buffer.length) ?? 0) - 1));
  }
}

const sharedBuffers = new SharedBufferPool();

/**
 * Buffers that objects are read into during one association, so that
 * sending many stills does not allocate, fault in and free a new buffer for
 * each. Buffers up to MAX_SHARED_BUFFER_BYTES are in shared memory, from a
 * pool of the process. A buffer comes back only after its object's C-STORE
 * got a response, or, after a failed send, once the socket closed: the
 * socket then holds no reference to it, so a later read cannot change bytes
 * still to be sent.
 */
export class ReadBuffers {
  private readonly free: Buffer[] = [];

  /**
   * Returns a buffer longer than `bytes`, so that a reader can check that the
   * file ends there, or undefined when the size is unknown or too large to keep.
   */
  take(bytes: number | undefined): Buffer | undefined {
    if (bytes === undefined || bytes >= MAX_REUSED_BUFFER_BYTES) return undefined;
    // Powers of two let stills of slightly different sizes share buffers.
    let length = MIN_BUFFER_BYTES;
    while (length <= bytes) length *= 2;
    const shared = length <= MAX_SHARED_BUFFER_BYTES ? sharedBuffers.take(length) : undefined;
    if (shared !== undefined) return shared;
    // The smallest that fits, so that large buffers stay for large objects.
    const index = this.free.findIndex((buffer) => buffer.length > bytes);
    if (index >= 0) return this.free.splice(index, 1)[0];
    return Buffer.allocUnsafe(length);
  }

  give(buffer: Buffer | undefined): void {
    if (buffer === undefined) return;
    if (isShared(buffer)) {
      sharedBuffers.give(buffer);
      return;
    }
    this.free.push(buffer);
    this.free.sort((a, b) => a.length - b.length);
    if (this.free.length > FREE_BUFFERS_KEPT) this.free.shift();
  }

  /** Gives a buffer back once `safe` settles. */
  giveWhen(buffer: Buffer | undefined, safe: Promise<unknown>): void {
    const give = (): void => this.give(buffer);
    safe.then(give, give);
  }

  /**
   * Drops a buffer whose read failed: the thread that read into it may have
   * been stopped in the middle, so it never comes back.
   */
  drop(buffer: Buffer | undefined): void {
    if (buffer !== undefined && isShared(buffer)) sharedBuffers.drop(buffer);
  }
}

export type LoadOutcome = ({ dataset: Buffer } | { error: unknown }) & {
  /** The reused buffer the object was read into, if any, to give back once the object is sent. */
  buffer: Buffer | undefined;
};

/** Starts loading an item; the promise never rejects, so a read started ahead cannot go unhandled. */
export function startLoad(item: BatchItem, buffers?: ReadBuffers): Promise<LoadOutcome> {
  const buffer = buffers?.take(item.bytes);
  return item.load(buffer).then(
    (dataset) => ({ dataset, buffer }),
    (error: unknown) => ({ error, buffer }),
  );
}

/** Results by object; each one goes to `onResult` when it is set. */
export class BatchResults {
  private readonly byObject = new Map<StoreObjectMetadata, StoreResult>();

  constructor(
    private readonly onResult: StoreObjectsOptions['onResult'],
    private readonly log: Logger,
  ) {}

  /** Stores the result and passes it on; resolves when the listener lets sending go on. */
  async set(object: StoreObjectMetadata, result: StoreResult): Promise<void> {
    this.byObject.set(object, result);
    try {
      await this.onResult?.(result);
    } catch (error) {
      this.log.error({ objectId: result.id, err: error }, 'store result listener failed');
    }
  }

  get(object: StoreObjectMetadata): StoreResult | undefined {
    return this.byObject.get(object);
  }
}
