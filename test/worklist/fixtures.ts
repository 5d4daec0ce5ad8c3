import { PassThrough } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';
import { worklistSchema, type WorklistConfig } from '../../src/profile/schema.js';
import { localDate } from '../../src/worklist/worklist-query.js';
import type { TestEntry } from './peers.js';

/** Creates a pino logger that keeps every line in memory. */
export function memoryLogger(level: 'debug' | 'info' = 'debug'): { log: Logger; lines: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8');
  });
  return { log: createLogger(level, stream), lines: () => text };
}

/** Worklist settings for a server on 127.0.0.1 with short timeouts. */
export function worklistConfig(port: number, overrides: Record<string, unknown> = {}): WorklistConfig {
  return worklistSchema.parse({
    host: '127.0.0.1',
    port,
    calledAeTitle: 'WLMSCP',
    connectTimeoutMs: 2_000,
    associationTimeoutMs: 3_000,
    requestTimeoutMs: 5_000,
    queryTimeoutMs: 10_000,
    retry: { initialMs: 200, maxMs: 1_000 },
    ...overrides,
  });
}

export const today = localDate(new Date());

/** An ASCII entry scheduled today for ENDOCAP_TEST, with the given accession number. */
export function asciiEntry(accessionNumber: string, overrides: Partial<TestEntry> = {}): TestEntry {
  return {
    characterSet: 'ISO_IR 192',
    patientName: Buffer.from(`PLAIN^PATIENT${accessionNumber}`),
    patientId: `PID-${accessionNumber}`,
    accessionNumber,
    studyInstanceUid: `1.2.826.0.1.3680043.10.1437.77.${accessionNumber.replace(/\D/g, '') || '1'}`,
    startDate: today,
    ...overrides,
  };
}
