import { createRequire } from 'node:module';

/**
 * Typed view of the part of dcmjs 0.52 that endocap uses. dcmjs ships no type
 * declarations, so this module loads it once and states the shapes we rely on.
 */

/** One data element in dcmjs's tag-keyed form ("00100010"). */
export interface DcmjsElement {
  vr: string;
  Value?: unknown[];
}

export type DcmjsDataset = Record<string, DcmjsElement>;

export interface DcmjsWriteOptions {
  /** False writes each frame as one fragment instead of 20 KiB pieces. */
  fragmentMultiframe?: boolean;
  /** True writes values longer than their VR allows instead of throwing. */
  allowInvalidVRLength?: boolean;
}

export interface DcmjsDicomDict {
  meta: DcmjsDataset;
  dict: DcmjsDataset;
  write(options?: DcmjsWriteOptions): ArrayBuffer;
}

export interface DcmjsApi {
  /** The library's own logger (loglevel). */
  log: { setLevel(level: 'silent', persist?: boolean): void };
  data: {
    DicomDict: new (meta: DcmjsDataset) => DcmjsDicomDict;
    DicomMessage: {
      readFile(part10: ArrayBuffer, options?: { ignoreErrors?: boolean; untilTag?: string }): DcmjsDicomDict;
    };
    DicomMetaDictionary: {
      naturalizeDataset(dataset: DcmjsDataset): Record<string, unknown>;
    };
  };
}

const require = createRequire(import.meta.url);

export const dcmjs = require('dcmjs') as DcmjsApi;

// dcmjs writes some warnings straight to the console with element values in
// them, for example "Unknown name in dataset" and the value of a private
// element, which may hold patient data. endocap logs only through pino.
dcmjs.log.setLevel('silent', false);

/** Copies a Buffer into an ArrayBuffer of exactly its length, because dcmjs reads a view from offset 0 of its backing memory. */
export function exactArrayBuffer(buffer: Buffer): ArrayBuffer {
  const copy = new ArrayBuffer(buffer.byteLength);
  new Uint8Array(copy).set(buffer);
  return copy;
}
