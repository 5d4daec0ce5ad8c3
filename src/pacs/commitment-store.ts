import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { isValidUid } from '../dicom/uid.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { makeFolderDurably, removeFilesDurably, TEMP_SUFFIX, writeFileDurably } from '../spool/durable-file.js';

/** One object named in a commitment request: its spool id and its UIDs. */
export interface CommitmentObject {
  /** Internal object id: safe to log. */
  id: string;
  sopClassUid: string;
  sopInstanceUid: string;
}

/** A Storage Commitment request whose result has not arrived yet. */
export interface PendingTransaction {
  transactionUid: string;
  destination: string;
  /** ISO time the transaction was recorded, just before the N-ACTION request was sent. */
  requestedAt: string;
  objects: CommitmentObject[];
}

const pendingTransactionSchema = z.strictObject({
  transactionUid: z.string().refine(isValidUid),
  destination: z.string().min(1),
  requestedAt: z.iso.datetime(),
  objects: z.array(z.strictObject({ id: z.string().min(1), sopClassUid: z.string().refine(isValidUid), sopInstanceUid: z.string().refine(isValidUid) })),
}) satisfies z.ZodType<PendingTransaction>;

const FILE_SUFFIX = '.json';

export interface CommitmentStoreOptions {
  /** Folder of the transaction files, normally `<spool folder>/commitments`. */
  directory: string;
  log: Logger;
}

/**
 * Durable record of pending commitment transactions: one JSON file per
 * transaction, named by its Transaction UID. Each file is written to a temp
 * file, fsynced, renamed into place and its folder fsynced, so after a power
 * cut a transaction is either fully recorded or absent. Callers must not write
 * the same transaction concurrently.
 */
export class CommitmentStore {
  private readonly directory: string;
  private readonly log: Logger;

  constructor(options: CommitmentStoreOptions) {
    this.directory = options.directory;
    this.log = options.log;
  }

  /** Creates the folder, removes half-written files and returns every recorded transaction, oldest first. */
  async open(): Promise<PendingTransaction[]> {
    let names: string[];
    try {
      await makeFolderDurably(this.directory);
      names = await readdir(this.directory);
      const temps = names.filter((name) => name.endsWith(TEMP_SUFFIX));
      if (temps.length > 0) await removeFilesDurably(this.directory, temps);
    } catch (error) {
      throw new EndocapError(ErrorCodes.COMMITMENT_STATE_FAILED, `failed to open commitment folder ${this.directory}: ${errorMessage(error)}`, { cause: error });
    }

    const transactions: PendingTransaction[] = [];
    for (const name of names.filter((entry) => entry.endsWith(FILE_SUFFIX))) {
      const transaction = await this.readTransaction(name);
      if (transaction) transactions.push(transaction);
    }
    return transactions.sort((a, b) => a.requestedAt.localeCompare(b.requestedAt));
  }

  async save(transaction: PendingTransaction): Promise<void> {
    try {
      await writeFileDurably(this.filePath(transaction.transactionUid), JSON.stringify(transaction));
    } catch (error) {
      throw new EndocapError(ErrorCodes.COMMITMENT_STATE_FAILED, `failed to record commitment transaction ${transaction.transactionUid}: ${errorMessage(error)}`, {
        cause: error,
        retryable: true,
      });
    }
  }

  async remove(transactionUid: string): Promise<void> {
    try {
      await removeFilesDurably(this.directory, [path.basename(this.filePath(transactionUid))]);
    } catch (error) {
      throw new EndocapError(ErrorCodes.COMMITMENT_STATE_FAILED, `failed to remove commitment transaction ${transactionUid}: ${errorMessage(error)}`, {
        cause: error,
        retryable: true,
      });
    }
  }

  /** Reads one file; a file that is not a valid transaction is logged and left in place for inspection. */
  private async readTransaction(name: string): Promise<PendingTransaction | undefined> {
    const file = path.join(this.directory, name);
    let json: unknown;
    try {
      json = JSON.parse(await readFile(file, 'utf8'));
    } catch (error) {
      this.log.error({ file, err: { message: errorMessage(error) } }, 'commitment transaction file unreadable, ignored');
      return undefined;
    }
    const parsed = pendingTransactionSchema.safeParse(json);
    if (!parsed.success || `${parsed.data.transactionUid}${FILE_SUFFIX}` !== name) {
      this.log.error({ file }, 'commitment transaction file invalid, ignored');
      return undefined;
    }
    return parsed.data;
  }

  private filePath(transactionUid: string): string {
    // Transaction UIDs come from this box's own generator, and every lookup of
    // a UID received from the network goes through memory, so a UID reaching
    // this point is digits and dots only.
    if (!isValidUid(transactionUid)) throw new EndocapError(ErrorCodes.COMMITMENT_STATE_FAILED, `invalid Transaction UID ${transactionUid}`);
    return path.join(this.directory, transactionUid + FILE_SUFFIX);
  }
}
