import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { SpooledObjectStream } from '../spool/types.js';

/** One body part of a STOW-RS request: a Part 10 file, open for reading. */
export interface MultipartPart {
  bytes: number;
  stream: Readable;
}

/** A multipart/related request body whose length is known before the first byte is sent. */
export interface MultipartBody {
  contentType: string;
  contentLength: number;
  /** Yields the body in chunks: part headers, then each file as read from disk. */
  stream: Readable;
}

const partHeader = 'Content-Type: application/dicom\r\n';

/**
 * Makes a boundary of 32 random hex digits (128 bits). The files are not
 * scanned for it: that would read every clip twice, and a given 128-bit value
 * turns up in a file by chance with negligible probability. RFC 2046 5.1.1
 * allows up to 70 characters.
 */
export function newBoundary(): string {
  return `endocap-${randomBytes(16).toString('hex')}`;
}

/**
 * Builds a STOW-RS request body (PS3.18 8.6.1.2, RFC 2387): one
 * `application/dicom` part per file, each file streamed as it is stored, so
 * that memory use does not grow with the size of a clip. The parts' streams
 * are read in order. The caller destroys them if the body is not read to the end.
 */
export function multipartBody(parts: MultipartPart[], boundary = newBoundary()): MultipartBody {
  const opening = (index: number): Buffer => Buffer.from(`${index === 0 ? '' : '\r\n'}--${boundary}\r\n${partHeader}\r\n`, 'latin1');
  const closing = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1');

  let contentLength = closing.length;
  for (const [index, part] of parts.entries()) contentLength += opening(index).length + part.bytes;

  async function* chunks(): AsyncGenerator<Buffer> {
    for (const [index, part] of parts.entries()) {
      yield opening(index);
      let sent = 0;
      for await (const chunk of part.stream) {
        const buffer = chunk as Buffer;
        sent += buffer.length;
        yield buffer;
      }
      // A file that changed size after it was opened would make Content-Length false.
      if (sent !== part.bytes) throw new Error(`object file changed while being sent: ${sent} bytes read, ${part.bytes} expected`);
    }
    yield closing;
  }

  return {
    contentType: `multipart/related; type="application/dicom"; boundary=${boundary}`,
    contentLength,
    stream: Readable.from(chunks(), { objectMode: false }),
  };
}

/** Wraps bytes already in memory as a part, for queues that cannot stream. */
export function bufferPart(bytes: Buffer): SpooledObjectStream {
  return { bytes: bytes.length, stream: Readable.from([bytes], { objectMode: false }) };
}
