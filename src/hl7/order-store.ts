import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { Low } from 'lowdb';
import { z } from 'zod';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { makeFolderDurably } from '../spool/durable-file.js';
import { DurableJsonFile } from '../state/durable-json-file.js';
import { worklistEntrySchema, type WorklistEntry } from '../worklist/worklist-entry.js';
import type { PatientIdentifier } from './hl7-fields.js';
import type { OrderNumbers, PatientUpdate } from './order-mapping.js';

const storedOrderSchema = z.strictObject({
  /** Internal id, safe to log: H followed by a number. */
  orderId: z.string(),
  placerOrderNumber: z.string(),
  fillerOrderNumber: z.string(),
  /** ISO time the order was placed or last changed. */
  updatedAt: z.iso.datetime(),
  entry: worklistEntrySchema,
});

const orderFileSchema = z.strictObject({
  formatVersion: z.literal(1),
  nextOrderNumber: z.number().int().positive(),
  orders: z.array(storedOrderSchema),
});

type StoredOrder = z.infer<typeof storedOrderSchema>;
type OrderFile = z.infer<typeof orderFileSchema>;

const emptyFile = (): OrderFile => ({ formatVersion: 1, nextOrderNumber: 1, orders: [] });

export interface OrderStoreOptions {
  stateDirectory: string;
  /** Orders not changed for this long are removed. */
  retentionHours: number;
  log: Logger;
  /** Clock in ms since the epoch; tests pass a fake one. */
  clock?: () => number;
}

/**
 * Open orders received over HL7, in `<stateDirectory>/hl7-orders.json`, one
 * record per requested procedure. Every change is durable on disk before its
 * promise resolves, so an AA sent afterwards means the order survives a
 * restart. Changes run one after another. The file contains patient data and
 * is written with mode 0640.
 */
export class OrderStore {
  private readonly db: Low<OrderFile>;
  private readonly options: OrderStoreOptions;
  private readonly log: Logger;
  private readonly clock: () => number;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(db: Low<OrderFile>, options: OrderStoreOptions) {
    this.db = db;
    this.options = options;
    this.log = options.log;
    this.clock = options.clock ?? Date.now;
  }

  /** Reads the file; one that cannot be read is moved aside (`.invalid-<time>`) and the store starts empty. */
  static async open(options: OrderStoreOptions): Promise<OrderStore> {
    await makeFolderDurably(options.stateDirectory);
    const file = path.join(options.stateDirectory, 'hl7-orders.json');
    const db = new Low<OrderFile>(new DurableJsonFile(file), emptyFile());
    try {
      await db.read();
      const parsed = orderFileSchema.safeParse(db.data);
      if (!parsed.success) throw new Error(`${parsed.error.issues.length} invalid field(s)`);
      db.data = parsed.data;
    } catch (error) {
      // A JSON.parse message quotes the text around the error, which is patient data here.
      const reason = error instanceof SyntaxError ? 'not valid JSON' : errorMessage(error);
      const aside = `${file}.invalid-${Date.now()}`;
      await rename(file, aside).catch(() => undefined);
      options.log.error({ err: { message: reason }, movedTo: aside }, 'HL7 order file unreadable, moved aside; starting with no orders');
      db.data = emptyFile();
    }
    const store = new OrderStore(db, options);
    await store.prune();
    return store;
  }

  /**
   * Reads the open orders' entries without changing the file, for the
   * console when the daemon is stopped. A missing file has no orders.
   */
  static async readEntries(stateDirectory: string): Promise<WorklistEntry[]> {
    let text: string;
    try {
      text = await readFile(path.join(stateDirectory, 'hl7-orders.json'), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      // JSON.parse quotes the text around the error, which is patient data here.
      throw new Error('the HL7 order file is not valid JSON');
    }
    const parsed = orderFileSchema.safeParse(json);
    if (!parsed.success) throw new Error(`the HL7 order file has ${parsed.error.issues.length} invalid field(s)`);
    return parsed.data.orders.map((order) => order.entry);
  }

  /** The open orders' procedure entries. */
  get entries(): WorklistEntry[] {
    return this.db.data.orders.map((order) => order.entry);
  }

  get size(): number {
    return this.db.data.orders.length;
  }

  /**
   * Places an order: its entries replace those of the order with the same
   * placer or filler order number. Returns the internal ids of the records.
   */
  place(numbers: OrderNumbers, entries: readonly WorklistEntry[]): Promise<{ orderIds: string[]; replaced: number }> {
    return this.change((data, now) => {
      const kept = data.orders.filter((order) => !sameOrder(order, numbers));
      const replaced = data.orders.length - kept.length;
      const added: StoredOrder[] = entries.map((entry) => ({ orderId: `H${data.nextOrderNumber++}`, ...numbers, updatedAt: now, entry }));
      data.orders = [...kept, ...added];
      return { orderIds: added.map((order) => order.orderId), replaced };
    });
  }

  /**
   * Removes the records of an order, found by its placer or filler order
   * number or, when the message has neither, by accession number. Returns the
   * entries removed.
   */
  cancel(numbers: OrderNumbers, accessionNumbers: readonly string[]): Promise<Array<{ orderId: string; entry: WorklistEntry }>> {
    return this.change((data) => {
      const byNumber = numbers.placerOrderNumber !== '' || numbers.fillerOrderNumber !== '';
      const matches = (order: StoredOrder): boolean => (byNumber ? sameOrder(order, numbers) : accessionNumbers.includes(order.entry.accessionNumber));
      const removed = data.orders.filter(matches);
      data.orders = data.orders.filter((order) => !matches(order));
      return removed.map((order) => ({ orderId: order.orderId, entry: order.entry }));
    });
  }

  /** Applies new demographics to the orders of a patient (ADT^A08); returns how many changed. */
  updatePatient(update: PatientUpdate): Promise<number> {
    return this.change((data, now) => {
      let changed = 0;
      for (const order of data.orders) {
        if (!samePatient(order.entry, update.patient)) continue;
        applyDemographics(order.entry, update);
        order.updatedAt = now;
        changed += 1;
      }
      return changed;
    });
  }

  /** Moves the orders of `prior` to the patient of `update` (ADT^A40); returns how many moved. */
  mergePatient(prior: PatientIdentifier, update: PatientUpdate): Promise<number> {
    return this.change((data, now) => {
      let moved = 0;
      for (const order of data.orders) {
        if (!samePatient(order.entry, prior)) continue;
        order.entry.patientId = update.patient.id;
        order.entry.issuerOfPatientId = update.patient.issuer;
        applyDemographics(order.entry, update);
        order.updatedAt = now;
        moved += 1;
      }
      return moved;
    });
  }

  /** Removes orders older than the retention; returns how many. */
  prune(): Promise<number> {
    const cutoff = this.clock() - this.options.retentionHours * 3_600_000;
    if (!this.db.data.orders.some((order) => Date.parse(order.updatedAt) < cutoff)) return Promise.resolve(0);
    return this.change((data) => {
      const before = data.orders.length;
      data.orders = data.orders.filter((order) => Date.parse(order.updatedAt) >= cutoff);
      const removed = before - data.orders.length;
      this.log.info({ removed, retentionHours: this.options.retentionHours }, 'expired HL7 orders removed');
      return removed;
    });
  }

  /** Runs `apply` on the data and writes it durably; a failed write restores the data as it was. */
  private change<T>(apply: (data: OrderFile, now: string) => T): Promise<T> {
    const run = this.queue.then(async () => {
      const before = structuredClone(this.db.data);
      const result = apply(this.db.data, new Date(this.clock()).toISOString());
      try {
        await this.db.write();
      } catch (error) {
        this.db.data = before;
        throw new EndocapError(ErrorCodes.HL7_ORDER_STORE_FAILED, `HL7 order file not written: ${errorMessage(error)}`, { cause: error, retryable: true });
      }
      return result;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function sameOrder(order: StoredOrder, numbers: OrderNumbers): boolean {
  return (numbers.placerOrderNumber !== '' && order.placerOrderNumber === numbers.placerOrderNumber) || (numbers.fillerOrderNumber !== '' && order.fillerOrderNumber === numbers.fillerOrderNumber);
}

/** Same id, and the same issuer unless one side has none. */
function samePatient(entry: WorklistEntry, patient: PatientIdentifier): boolean {
  if (entry.patientId !== patient.id) return false;
  return entry.issuerOfPatientId === '' || patient.issuer === '' || entry.issuerOfPatientId === patient.issuer;
}

function applyDemographics(entry: WorklistEntry, update: PatientUpdate): void {
  if (update.patientName !== undefined) entry.patientName = update.patientName;
  if (update.patientBirthDate !== undefined) entry.patientBirthDate = update.patientBirthDate;
  if (update.patientSex !== undefined) entry.patientSex = update.patientSex;
}
