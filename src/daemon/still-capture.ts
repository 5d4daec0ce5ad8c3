import { EventEmitter } from 'node:events';
import { buildVlEndoscopicImage, JPEG_BASELINE_TRANSFER_SYNTAX, VL_ENDOSCOPIC_IMAGE_STORAGE } from '../dicom/vl-endoscopic.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Profile } from '../profile/schema.js';
import type { AppState } from '../state/app-state.js';
import type { Spool } from '../spool/spool.js';
import type { VideoSource } from '../video/video-source.js';
import { captureContextOrUnidentified, type CaptureContext, type CaptureSlot } from './exam-capture.js';

export interface StillCaptureOptions {
  profile: Profile;
  boxId: string;
  softwareVersion: string;
  video: Pick<VideoSource, 'captureStill'>;
  spool: Pick<Spool, 'add'>;
  state: AppState;
  newUid: () => string;
  /** Capture context of stills: the open exam or the unidentified-patient study; the latter when absent. */
  context?: CaptureContext;
  log: Logger;
}

interface StillCaptureEvents {
  stillCaptured: [{ objectId: string; bytes: number; latencyMs: number }];
  captureFailed: [{ reason: string; code: string }];
}

/**
 * Turns a pedal press into a durable DICOM object: picks the frame that was
 * on screen at the press, encodes it, wraps it in a VL Endoscopic Image and
 * writes it to the spool. Captures run one after another so instance numbers
 * follow the order of the presses.
 */
export class StillCapture extends EventEmitter<StillCaptureEvents> {
  private readonly options: StillCaptureOptions;
  private readonly log: Logger;
  private readonly context: CaptureContext;
  private chain: Promise<void> = Promise.resolve();

  constructor(options: StillCaptureOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'still-capture' });
    this.context = captureContextOrUnidentified(options.context, options);
  }

  /** Queues a capture for a press at clock time `pressedAt` (ms since the epoch). */
  capture(pressedAt: number): Promise<void> {
    const run = this.chain.then(() => this.captureNow(pressedAt));
    this.chain = run;
    return run;
  }

  /** Resolves when every queued capture has finished. */
  drain(): Promise<void> {
    return this.chain;
  }

  private async captureNow(pressedAt: number): Promise<void> {
    const { profile, video, spool, state } = this.options;
    const startedAt = Date.now();
    const allocation = this.context.allocate('still', new Date(pressedAt));
    let slot: CaptureSlot | undefined;
    try {
      // The JPEG encode and the durable instance-number allocation run side by side.
      const [still, allocated] = await Promise.all([
        video.captureStill(pressedAt, { jpegQuality: profile.still.jpegQuality, selection: profile.still.selection, windowMs: profile.still.sharpestWindowMs }),
        allocation,
      ]);
      slot = allocated;
      const encodedAt = Date.now();
      const { sopInstanceUid } = slot;
      const part10 = slot.finish(buildVlEndoscopicImage({
        jpeg: still.jpeg,
        width: still.width,
        height: still.height,
        acquiredAt: still.frameTime,
        sopInstanceUid,
        station: {
          ...profile.station,
          deviceSerialNumber: profile.station.deviceSerialNumber ?? this.options.boxId,
          softwareVersion: this.options.softwareVersion,
        },
        study: slot.study,
        series: slot.series,
        instanceNumber: slot.instanceNumber,
        burnedInAnnotation: profile.image.textRemovedByMasks ? 'NO' : 'YES',
      }));
      const builtAt = Date.now();
      const entry = await spool.add(part10, {
        sopClassUid: VL_ENDOSCOPIC_IMAGE_STORAGE,
        sopInstanceUid,
        transferSyntaxUid: JPEG_BASELINE_TRANSFER_SYNTAX,
      });
      await slot.stored();
      const spooledAt = Date.now();
      const latencyMs = spooledAt - pressedAt;
      this.log.info(
        {
          objectId: entry.id,
          examId: slot.examId,
          bytes: entry.bytes,
          instanceNumber: slot.instanceNumber,
          latencyMs,
          queuedMs: startedAt - pressedAt,
          encodeMs: encodedAt - startedAt,
          buildMs: builtAt - encodedAt,
          spoolMs: spooledAt - builtAt,
        },
        'still captured',
      );
      await state.update((data) => {
        data.counters.stillsCaptured += 1;
      });
      this.emit('stillCaptured', { objectId: entry.id, bytes: entry.bytes, latencyMs });
    } catch (error) {
      const code = error instanceof EndocapError ? error.code : ErrorCodes.DICOM_BUILD_FAILED;
      this.log.error({ code, err: { message: errorMessage(error) } }, 'still capture failed');
      await state
        .update((data) => {
          data.counters.captureFailures += 1;
        })
        .catch((stateError: unknown) => this.log.error({ err: stateError }, 'capture failure not counted'));
      this.emit('captureFailed', { reason: errorMessage(error), code });
    } finally {
      slot?.settle();
      // A capture whose encode failed first still settles its slot once the allocation is done.
      if (!slot) void allocation.then((allocated) => allocated.settle(), () => undefined);
    }
  }
}
