import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { createLogger, type Logger } from '../../src/log.js';
import type { DestinationConfig } from '../../src/profile/schema.js';
import type { SenderQueue, SpoolEntry } from '../../src/spool/types.js';
import type { StoreObject } from '../../src/pacs/store-scu.js';

const run = promisify(execFile);

/** Patient data planted in every fixture. It must never show up in a log line or a reason. */
export const patientMarkers = ['MARKER^SECRET', 'PIDMARKER77'];

export const jpegBaseline = '1.2.840.10008.1.2.4.50';
export const explicitLittleEndian = '1.2.840.10008.1.2.1';
export const implicitLittleEndian = '1.2.840.10008.1.2';

/** Reads a File Meta Information UID with dcmdump, independently of the code under test. */
async function metaUid(path: string, tag: string): Promise<string> {
  const { stdout } = await run('dcmdump', ['-M', '-Un', '-s', '+P', tag, path]);
  const match = /\[([0-9.]+)\]/.exec(stdout);
  if (!match?.[1]) throw new Error(`dcmdump printed no ${tag} for ${path}: ${stdout}`);
  return match[1];
}

export async function storeObjectFromFile(id: string, path: string): Promise<StoreObject> {
  return {
    id,
    part10: await readFile(path),
    sopClassUid: await metaUid(path, '0002,0002'),
    sopInstanceUid: await metaUid(path, '0002,0003'),
    transferSyntaxUid: await metaUid(path, '0002,0010'),
  };
}

/**
 * Makes a JPEG Baseline Secondary Capture object with ffmpeg and DCMTK img2dcm.
 * `noise` makes a large, poorly compressible image, for transfers that take many PDUs.
 */
export async function makeJpegObject(directory: string, name: string, options: { width?: number; height?: number; noise?: boolean } = {}): Promise<string> {
  const width = options.width ?? 320;
  const height = options.height ?? 240;
  const jpegPath = join(directory, `${name}.jpg`);
  const dicomPath = join(directory, `${name}.dcm`);
  const source = options.noise ? `nullsrc=size=${width}x${height},geq=random(1)*255:128:128` : `testsrc2=size=${width}x${height}`;
  await run('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', source, '-frames:v', '1', '-q:v', '2', '-pix_fmt', 'yuvj420p', jpegPath]);
  await run('img2dcm', ['-k', `PatientName=${patientMarkers[0]}`, '-k', `PatientID=${patientMarkers[1]}`, jpegPath, dicomPath]);
  return dicomPath;
}

/** Decompresses a JPEG object into Explicit VR Little Endian with DCMTK dcmdjpeg. */
export async function makeUncompressedObject(jpegObjectPath: string, outputPath: string): Promise<string> {
  await run('dcmdjpeg', ['+te', jpegObjectPath, outputPath]);
  return outputPath;
}

/** Pixel data fragments of a file, each as written by `dcmdump +W`. */
export async function pixelFragments(path: string, scratchDirectory: string): Promise<Buffer[]> {
  await run('dcmdump', ['+W', scratchDirectory, path]);
  const prefix = path.split('/').pop() ?? path;
  const names = (await readdir(scratchDirectory)).filter((entry) => entry.startsWith(`${prefix}.`) && entry.endsWith('.raw'));
  names.sort((a, b) => Number(a.split('.').at(-2)) - Number(b.split('.').at(-2)));
  return Promise.all(names.map((entry) => readFile(join(scratchDirectory, entry))));
}

export async function dump(path: string): Promise<string> {
  return (await run('dcmdump', ['-Un', path])).stdout;
}

/** Creates a pino logger that keeps every line in memory. */
export function memoryLogger(level: 'debug' | 'info' = 'debug'): { log: Logger; lines: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8');
  });
  return { log: createLogger(level, stream), lines: () => text };
}

export function destinationFor(port: number, overrides: Partial<DestinationConfig> = {}): DestinationConfig {
  return {
    kind: 'dicom',
    name: 'test-pacs',
    host: '127.0.0.1',
    port,
    calledAeTitle: 'STORESCP',
    connectTimeoutMs: 2_000,
    associationTimeoutMs: 3_000,
    requestTimeoutMs: 5_000,
    retry: { initialMs: 100, maxMs: 2_000, multiplier: 2 },
    ...overrides,
  };
}

interface MarkCall {
  kind: 'stored' | 'failed' | 'set-aside' | 'unsent';
  id: string;
  destination: string;
  status?: number;
  reason?: string;
}

/** In-memory SenderQueue: the real spool is a separate component with its own tests. */
export class MemoryQueue implements SenderQueue {
  readonly entries = new Map<string, { entry: SpoolEntry; part10: Buffer }>();
  readonly calls: MarkCall[] = [];

  add(object: StoreObject, destinations: string[]): void {
    const now = new Date().toISOString();
    const deliveries: SpoolEntry['deliveries'] = {};
    for (const name of destinations) deliveries[name] = { state: 'queued', attempts: 0, updatedAt: now };
    const entry: SpoolEntry = {
      id: object.id,
      sopClassUid: object.sopClassUid,
      sopInstanceUid: object.sopInstanceUid,
      transferSyntaxUid: object.transferSyntaxUid,
      bytes: object.part10.length,
      queuedAt: now,
      deliveries,
    };
    this.entries.set(object.id, { entry, part10: object.part10 });
  }

  pending(destination: string): SpoolEntry[] {
    return [...this.entries.values()]
      .map(({ entry }) => entry)
      .filter((entry) => entry.deliveries[destination]?.state === 'queued')
      .sort((a, b) => a.queuedAt.localeCompare(b.queuedAt));
  }

  async markSending(ids: string[], destination: string): Promise<void> {
    for (const id of ids) {
      const delivery = this.entries.get(id)?.entry.deliveries[destination];
      if (delivery?.state === 'queued') delivery.state = 'sending';
    }
  }

  async read(id: string): Promise<Buffer> {
    const found = this.entries.get(id);
    if (!found) throw new Error(`no object ${id}`);
    return found.part10;
  }

  async markStored(id: string, destination: string, status: number): Promise<void> {
    this.update(id, destination, 'stored', undefined, status);
    this.calls.push({ kind: 'stored', id, destination, status });
  }

  async markUnsent(id: string, destination: string): Promise<void> {
    const delivery = this.entries.get(id)?.entry.deliveries[destination];
    if (delivery?.state === 'sending') delivery.state = 'queued';
    this.calls.push({ kind: 'unsent', id, destination });
  }

  async markFailed(id: string, destination: string, reason: string, status?: number): Promise<void> {
    this.update(id, destination, 'queued', reason, status);
    this.calls.push({ kind: 'failed', id, destination, reason, status });
  }

  async markSetAside(id: string, destination: string, reason: string, status?: number): Promise<void> {
    this.update(id, destination, 'set-aside', reason, status);
    this.calls.push({ kind: 'set-aside', id, destination, reason, status });
  }

  state(id: string, destination: string): string | undefined {
    return this.entries.get(id)?.entry.deliveries[destination]?.state;
  }

  private update(id: string, destination: string, state: 'queued' | 'stored' | 'set-aside', reason?: string, status?: number): void {
    const delivery = this.entries.get(id)?.entry.deliveries[destination];
    if (!delivery) throw new Error(`no delivery of ${id} to ${destination}`);
    delivery.state = state;
    delivery.attempts += 1;
    delivery.lastError = reason;
    delivery.lastStatus = status;
    delivery.updatedAt = new Date().toISOString();
  }
}
