import './polyfill.js';
import { FilterAPI } from 'node-av/api';
import type { Frame } from 'node-av/lib';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { ImageConfig } from '../profile/capture-schema.js';
import { imageFilterSteps } from './image-filter.js';

/** Width of the luma image the focus measure runs on: small enough to cost about a millisecond, large enough to keep edges. */
const MEASURE_WIDTH = 320;

/**
 * Variance of the 4-neighbour Laplacian of an 8-bit gray image: a cheap
 * focus measure (Pech-Pacheco et al., 2000). Sharp edges give large second
 * derivatives, blur and motion smear flatten them, so a higher value means a
 * sharper picture of the same scene. `stride` is the bytes per row.
 */
export function laplacianVariance(gray: Uint8Array, width: number, height: number, stride: number = width): number {
  let sum = 0;
  let sumOfSquares = 0;
  let count = 0;
  for (let y = 1; y < height - 1; y += 1) {
    const row = y * stride;
    for (let x = 1; x < width - 1; x += 1) {
      const index = row + x;
      const laplacian =
        (gray[index - 1] ?? 0) + (gray[index + 1] ?? 0) + (gray[index - stride] ?? 0) + (gray[index + stride] ?? 0) - 4 * (gray[index] ?? 0);
      sum += laplacian;
      sumOfSquares += laplacian * laplacian;
      count += 1;
    }
  }
  if (count === 0) return 0;
  const mean = sum / count;
  return sumOfSquares / count - mean * mean;
}

/**
 * Measures the focus of decoded frames: applies the profile's masks and crop,
 * so that the static on-screen text does not count, scales the luma down to
 * MEASURE_WIDTH pixels wide and returns its Laplacian variance. Frames are
 * borrowed and measured one at a time.
 */
export class FocusMeter {
  private readonly image: ImageConfig | undefined;
  private filter: FilterAPI | undefined;
  private filterKey = '';

  constructor(options: { image?: ImageConfig }) {
    this.image = options.image;
  }

  async measure(frame: Frame): Promise<number> {
    let gray: Frame | undefined;
    try {
      const filter = this.filterFor(frame);
      await filter.process(frame);
      gray = (await filter.receive()) ?? undefined;
      const plane = gray?.data?.[0];
      const stride = gray?.linesize[0];
      if (gray === undefined || plane === undefined || stride === undefined) {
        throw new EndocapError(ErrorCodes.STILL_ENCODE_FAILED, 'focus filter returned no frame');
      }
      return laplacianVariance(plane, gray.width, gray.height, stride);
    } catch (error) {
      this.close();
      if (error instanceof EndocapError) throw error;
      throw new EndocapError(ErrorCodes.STILL_ENCODE_FAILED, `focus measure failed: ${errorMessage(error)}`, { cause: error, retryable: true });
    } finally {
      gray?.free();
    }
  }

  close(): void {
    this.filter?.close();
    this.filter = undefined;
    this.filterKey = '';
  }

  private filterFor(frame: Frame): FilterAPI {
    const key = `${frame.width}x${frame.height}/${frame.format}`;
    if (this.filter !== undefined && this.filterKey === key) return this.filter;
    this.close();
    const imageSteps = this.image === undefined ? [] : imageFilterSteps(this.image, frame.width, frame.height);
    const description = ['format=yuv420p', ...imageSteps, `scale=w=${MEASURE_WIDTH}:h=-2:flags=area`, 'format=gray'].join(',');
    this.filter = FilterAPI.create(description, { threads: 1 });
    this.filterKey = key;
    return this.filter;
  }
}
