import './polyfill.js';
import { Demuxer } from 'node-av/api';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { InputSpec } from './input-spec.js';

export interface OpenInputOptions {
  /** Maximum wait for the open, in milliseconds. */
  timeoutMs: number;
  /** Ends the wait early when the source is stopped. */
  abort: AbortSignal;
  log: Logger;
}

/**
 * Opens an FFmpeg input with a time limit. node-av 6.1 offers no way to
 * abort an open in progress, so on timeout or abort the open is left to finish
 * on its libuv thread and its result is closed then. Throws VIDEO_OPEN_FAILED.
 */
export async function openInput(input: InputSpec, options: OpenInputOptions): Promise<Demuxer> {
  const { timeoutMs, abort, log } = options;
  const opening = Demuxer.open(input.url, { format: input.format, options: input.options });
  let settled = false;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const cutoff = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new EndocapError(ErrorCodes.VIDEO_OPEN_FAILED, `video source open timed out after ${timeoutMs} ms`, { retryable: true }));
    }, timeoutMs);
    onAbort = () => reject(new EndocapError(ErrorCodes.VIDEO_OPEN_FAILED, 'video source stopped while opening'));
    abort.addEventListener('abort', onAbort, { once: true });
  });

  try {
    const demuxer = await Promise.race([opening, cutoff]);
    settled = true;
    return demuxer;
  } catch (error) {
    // The cutoff rejects with EndocapError, so anything else came from the open itself.
    if (error instanceof EndocapError) throw error;
    settled = true;
    throw new EndocapError(ErrorCodes.VIDEO_OPEN_FAILED, `video source open failed: ${errorMessage(error)}`, { cause: error, retryable: true });
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) abort.removeEventListener('abort', onAbort);
    if (!settled) {
      opening
        .then((late) => late.close())
        .catch((error: unknown) => log.debug({ err: errorMessage(error) }, 'abandoned video open failed'));
    }
  }
}
