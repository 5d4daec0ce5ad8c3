import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { isValidUid } from '../dicom/uid.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { makeFolderDurably, removeFilesDurably, TEMP_SUFFIX, writeFileDurably } from '../spool/durable-file.js';
import type { DatasetElement } from './dataset-writer.js';

const stringVrs = ['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'LO', 'LT', 'PN', 'SH', 'ST', 'TM', 'UC', 'UI', 'UR', 'UT'] as const;

const elementSchema: z.ZodType<DatasetElement> = z.lazy(() =>
  z.union([
    z.strictObject({ tag: z.number().int(), vr: z.enum(stringVrs), value: z.string() }),
    z.strictObject({ tag: z.number().int(), vr: z.literal('SQ'), items: z.array(z.array(elementSchema)) }),
  ]),
);

const messageSchema = z.strictObject({ attributes: z.array(elementSchema), sent: z.boolean() });

const recordSchema = z.strictObject({
  sopInstanceUid: z.string().refine(isValidUid),
  /** Internal exam id: safe to log. */
  examId: z.string(),
  queuedAt: z.iso.datetime(),
  create: messageSchema,
  final: messageSchema.extend({ status: z.enum(['COMPLETED', 'DISCONTINUED']) }).optional(),
  attempts: z.number().int().nonnegative(),
  lastError: z.string().optional(),
  /** Reason the server's response made further attempts pointless; the record waits for an operator. */
  setAside: z.string().optional(),
});

export type MppsRecord = z.infer<typeof recordSchema>;

const FILE_SUFFIX = '.json';

/**
 * Durable queue of MPPS messages: one JSON file per MPPS instance, named by
 * its SOP Instance UID, holding its N-CREATE and, once the exam ended, its
 * final N-SET. Both wait here until the server accepted them, across
 * restarts; the file is removed when the final N-SET is accepted. Files are
 * written to a temp file, fsynced and renamed, so a power cut leaves the old
 * or the new record. Updates run one after another.
 */
export class MppsQueue {
  private readonly directory: string;
  private readonly log: Logger;
  private readonly records = new Map<string, MppsRecord>();
  private chain: Promise<unknown> = Promise.resolve();

  constructor(options: { directory: string; log: Logger }) {
    this.directory = options.directory;
    this.log = options.log.child({ component: 'mpps-queue' });
  }

  /** Reads every record; unreadable files are logged and left in place. */
  async open(): Promise<void> {
    let names: string[];
    try {
      await makeFolderDurably(this.directory);
      names = await readdir(this.directory);
      const temps = names.filter((name) => name.endsWith(TEMP_SUFFIX));
      if (temps.length > 0) await removeFilesDurably(this.directory, temps);
    } catch (error) {
      throw new EndocapError(ErrorCodes.MPPS_STATE_FAILED, `failed to open MPPS folder ${this.directory}: ${errorMessage(error)}`, { cause: error });
    }
    for (const name of names.filter((entry) => entry.endsWith(FILE_SUFFIX))) {
      const file = path.join(this.directory, name);
      try {
        const record = recordSchema.parse(JSON.parse(await readFile(file, 'utf8')));
        if (`${record.sopInstanceUid}${FILE_SUFFIX}` !== name) throw new Error('file name does not match its SOP Instance UID');
        this.records.set(record.sopInstanceUid, record);
      } catch (error) {
        // Messages of JSON.parse and zod can quote the file's text, which contains patient data.
        this.log.error({ file, reason: error instanceof Error ? error.name : 'unknown' }, 'MPPS record unreadable, ignored');
      }
    }
    if (this.records.size > 0) this.log.info({ records: this.records.size }, 'MPPS messages waiting from before the restart');
  }

  /** Records with a message still to send and not set aside, oldest first. */
  pending(): MppsRecord[] {
    return [...this.records.values()]
      .filter((record) => record.setAside === undefined && (!record.create.sent || (record.final !== undefined && !record.final.sent)))
      .sort((a, b) => a.queuedAt.localeCompare(b.queuedAt));
  }

  list(): MppsRecord[] {
    return [...this.records.values()];
  }

  get(sopInstanceUid: string): MppsRecord | undefined {
    return this.records.get(sopInstanceUid);
  }

  /** Queues the N-CREATE of an MPPS instance; a second call for the same instance changes nothing. */
  queueCreate(sopInstanceUid: string, examId: string, attributes: DatasetElement[]): Promise<void> {
    return this.update(sopInstanceUid, (existing) => existing ?? { sopInstanceUid, examId, queuedAt: new Date().toISOString(), create: { attributes, sent: false }, attempts: 0 });
  }

  /** Queues the final N-SET after the N-CREATE queued before; a second call for the same instance changes nothing. */
  queueFinal(sopInstanceUid: string, status: 'COMPLETED' | 'DISCONTINUED', attributes: DatasetElement[]): Promise<void> {
    return this.update(sopInstanceUid, (existing) => {
      if (!existing) throw new EndocapError(ErrorCodes.MPPS_STATE_FAILED, `no N-CREATE queued for MPPS ${sopInstanceUid}`);
      if (existing.final) return existing;
      return { ...existing, final: { status, attributes, sent: false } };
    });
  }

  markCreateSent(sopInstanceUid: string): Promise<void> {
    return this.update(sopInstanceUid, (existing) => existing && { ...existing, create: { ...existing.create, sent: true }, attempts: 0, lastError: undefined });
  }

  /** Records the accepted final N-SET; the record is done and its file removed. */
  markFinalSent(sopInstanceUid: string): Promise<void> {
    return this.update(sopInstanceUid, () => undefined);
  }

  markFailed(sopInstanceUid: string, reason: string): Promise<void> {
    return this.update(sopInstanceUid, (existing) => existing && { ...existing, attempts: existing.attempts + 1, lastError: reason });
  }

  markSetAside(sopInstanceUid: string, reason: string): Promise<void> {
    return this.update(sopInstanceUid, (existing) => existing && { ...existing, attempts: existing.attempts + 1, lastError: reason, setAside: reason });
  }

  /** Applies `change` and writes the result durably, or removes the file when it returns undefined. */
  private update(sopInstanceUid: string, change: (existing: MppsRecord | undefined) => MppsRecord | undefined): Promise<void> {
    const run = this.chain.then(async () => {
      if (!isValidUid(sopInstanceUid)) throw new EndocapError(ErrorCodes.MPPS_STATE_FAILED, `invalid MPPS SOP Instance UID ${sopInstanceUid}`);
      const existing = this.records.get(sopInstanceUid);
      const next = change(existing);
      if (next === existing) return;
      const name = `${sopInstanceUid}${FILE_SUFFIX}`;
      try {
        if (next === undefined) await removeFilesDurably(this.directory, [name]);
        else await writeFileDurably(path.join(this.directory, name), JSON.stringify(next));
      } catch (error) {
        throw new EndocapError(ErrorCodes.MPPS_STATE_FAILED, `failed to record MPPS ${sopInstanceUid}: ${errorMessage(error)}`, { cause: error, retryable: true });
      }
      if (next === undefined) this.records.delete(sopInstanceUid);
      else this.records.set(sopInstanceUid, next);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }
}
