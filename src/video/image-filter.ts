import { EndocapError, ErrorCodes } from '../errors.js';
import type { ImageConfig } from '../profile/capture-schema.js';

/**
 * FFmpeg filter steps that apply the profile's image settings to a frame:
 * each mask painted black, then the crop. Masks are in source-frame pixels,
 * so they are drawn before the crop moves the origin. An empty list means the
 * frame is used as it is. Throws IMAGE_AREA_INVALID when the crop does not fit
 * inside a `width` x `height` frame.
 */
export function imageFilterSteps(image: ImageConfig, width: number, height: number): string[] {
  const steps = image.masks.map((mask) => `drawbox=x=${mask.x}:y=${mask.y}:w=${mask.width}:h=${mask.height}:color=black:t=fill`);
  const crop = image.crop;
  if (crop !== undefined) {
    if (crop.x + crop.width > width || crop.y + crop.height > height) {
      throw new EndocapError(
        ErrorCodes.IMAGE_AREA_INVALID,
        `image.crop (${crop.width}x${crop.height} at ${crop.x},${crop.y}) does not fit inside the ${width}x${height} video frame`,
      );
    }
    // exact=1 keeps the requested position: the crop filter would otherwise round it to the chroma grid.
    steps.push(`crop=w=${crop.width}:h=${crop.height}:x=${crop.x}:y=${crop.y}:exact=1`);
  }
  return steps;
}

/** Size of the picture after the crop. */
export function croppedSize(image: ImageConfig, width: number, height: number): { width: number; height: number } {
  return image.crop === undefined ? { width, height } : { width: image.crop.width, height: image.crop.height };
}

/** True when the image settings change pixels, so that H.264 from the source cannot be copied as it is. */
export function changesPixels(image: ImageConfig): boolean {
  return image.crop !== undefined || image.masks.length > 0;
}
