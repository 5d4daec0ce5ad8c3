import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { TransferSyntax } from '../pacs/dimse.js';
import { findOverAssociation, modalityWorklistFind } from '../pacs/find-scu.js';
import { ScuAssociation } from '../pacs/scu-association.js';
import { WORKLIST_FIND_CONTEXT } from '../pacs/service-tables.js';
import { formatStatus } from '../pacs/store-status.js';
import { loadTlsSettings } from '../pacs/transport.js';
import type { WorklistConfig } from '../profile/schema.js';
import { DatasetFormatError, readDataset } from './dataset-reader.js';
import { encodeDataset, type DatasetElement } from './dataset-writer.js';
import { parseWorklistResponse, type EntryWarning, type WorklistEntry } from './worklist-entry.js';

/** Largest single match parsed, in bytes; a worklist item is a few kilobytes. */
const MAX_MATCH_BYTES = 1024 * 1024;

export interface WorklistQueryOptions {
  server: WorklistConfig;
  callingAeTitle: string;
  identifier: DatasetElement[];
  log: Logger;
  /** Aborts the query, for a daemon that stops. */
  signal?: AbortSignal;
}

export interface WorklistQueryResult {
  entries: WorklistEntry[];
  /** C-FIND matches received; one match gives one entry per scheduled step. */
  matches: number;
  /** Matches that could not be read and were skipped. */
  malformed: number;
  /** True when the query was cut at `maxEntries`. */
  truncated: boolean;
  /** Distinct warnings over every match. */
  warnings: EntryWarning[];
  durationMs: number;
}

/**
 * Runs one Modality Worklist C-FIND on a new association. Each match is read
 * from its raw bytes, so text in sequence items is decoded with the match's
 * character set. Pending responses with warning status (FF01) count as
 * matches. The whole query is bounded by `queryTimeoutMs`, and a server that
 * sends more than `maxEntries` entries is cut off there (by A-ABORT, as the
 * association sends no C-CANCEL).
 *
 * Throws WORKLIST_QUERY_FAILED when the association fails, the server responds with
 * a failure status or the query times out. Messages name the server, never
 * an entry.
 */
export async function queryWorklist(options: WorklistQueryOptions): Promise<WorklistQueryResult> {
  const { server, log } = options;
  const where = `${server.host}:${server.port}`;
  const startedAt = Date.now();
  const controller = new AbortController();
  let stopReason: 'timeout' | 'limit' | undefined;
  const timer = setTimeout(() => {
    stopReason = 'timeout';
    controller.abort();
  }, server.queryTimeoutMs);
  const onOuterAbort = (): void => controller.abort();
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });

  const result: WorklistQueryResult = { entries: [], matches: 0, malformed: 0, truncated: false, warnings: [], durationMs: 0 };
  const warnings = new Set<EntryWarning>();
  let association: ScuAssociation | undefined;
  try {
    association = await ScuAssociation.open({
      host: server.host,
      port: server.port,
      callingAeTitle: options.callingAeTitle,
      calledAeTitle: server.calledAeTitle,
      connectTimeoutMs: server.connectTimeoutMs,
      associationTimeoutMs: server.associationTimeoutMs,
      contexts: [WORKLIST_FIND_CONTEXT],
      log,
      tls: await loadTlsSettings(server.tls),
      signal: controller.signal,
    });
    const context = association.acceptedContexts()[0];
    if (!context) throw new EndocapError(ErrorCodes.PACS_NO_PRESENTATION_CONTEXT, `${where} did not accept Modality Worklist C-FIND`);
    const explicitVr = context.transferSyntaxUid === TransferSyntax.ExplicitVRLittleEndian;

    const status = await findOverAssociation(association, {
      sopClassUid: modalityWorklistFind,
      identifier: encodeDataset(options.identifier, { explicitVr }),
      transferSyntaxUid: context.transferSyntaxUid,
      timeoutMs: server.requestTimeoutMs,
      onMatch: (match) => {
        result.matches += 1;
        if (result.truncated) return;
        const entries = parseMatch(match, explicitVr, server.assumedCharacterSet, warnings);
        if (entries === undefined) {
          result.malformed += 1;
          return;
        }
        result.entries.push(...entries);
        if (result.entries.length >= server.maxEntries) {
          result.entries.length = server.maxEntries;
          result.truncated = true;
          stopReason = 'limit';
          controller.abort();
        }
      },
    });
    if (status !== 0x0000) {
      throw new EndocapError(ErrorCodes.WORKLIST_QUERY_FAILED, `worklist query to ${where} ended with status ${formatStatus(status)} after ${result.matches} matches`, {
        retryable: true,
      });
    }
    await association.release(server.associationTimeoutMs);
  } catch (error) {
    if (stopReason === 'limit') {
      log.warn({ where, maxEntries: server.maxEntries }, 'worklist query cut at maxEntries; narrow the query');
    } else {
      association?.abort('worklist query failed');
      throw translate(error, where, stopReason === 'timeout' ? server.queryTimeoutMs : undefined);
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
  result.warnings = [...warnings];
  result.durationMs = Date.now() - startedAt;
  return result;
}

/** Reads one match; returns undefined for a match that is malformed or too large. */
function parseMatch(match: Buffer, explicitVr: boolean, assumedCharacterSet: string | undefined, warnings: Set<EntryWarning>): WorklistEntry[] | undefined {
  if (match.length > MAX_MATCH_BYTES) return undefined;
  try {
    const parsed = parseWorklistResponse(readDataset(match, { explicitVr }), assumedCharacterSet);
    for (const warning of parsed.warnings) warnings.add(warning);
    return parsed.entries;
  } catch (error) {
    if (error instanceof DatasetFormatError) return undefined;
    throw error;
  }
}

function translate(error: unknown, where: string, timedOutAfterMs: number | undefined): EndocapError {
  if (timedOutAfterMs !== undefined) {
    return new EndocapError(ErrorCodes.WORKLIST_QUERY_FAILED, `worklist query to ${where} timed out after ${timedOutAfterMs} ms`, { retryable: true, cause: error });
  }
  if (error instanceof EndocapError && error.code === ErrorCodes.WORKLIST_QUERY_FAILED) return error;
  const retryable = error instanceof EndocapError ? error.retryable : true;
  return new EndocapError(ErrorCodes.WORKLIST_QUERY_FAILED, `worklist query to ${where} failed: ${errorMessage(error)}`, { retryable, cause: error });
}
