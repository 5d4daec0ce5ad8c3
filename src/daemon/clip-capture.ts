import { EventEmitter } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import { buildVideoEndoscopicImage, VIDEO_ENDOSCOPIC_IMAGE_STORAGE } from '../dicom/video-endoscopic.js';
import { chooseH264TransferSyntax } from '../dicom/video-transfer-syntax.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Profile } from '../profile/schema.js';
import type { AppState } from '../state/app-state.js';
import type { Spool } from '../spool/spool.js';
import type { ClipClosedEvent } from '../video/clip-recorder.js';
import { captureContextOrUnidentified, type CaptureContext, type CaptureSlot } from './exam-capture.js';

export interface ClipCaptureOptions {
  profile: Profile;
  boxId: string;
  softwareVersion: string;
  spool: Pick<Spool, 'add'>;
  state: AppState;
  newUid: () => string;
  /** Largest object the destinations accept, in bytes; a larger one is logged. */
  maxObjectBytes: number;
  /** Capture context of clips: the open exam or the unidentified-patient study; the latter when absent. */
  context?: CaptureContext;
  log: Logger;
}

export interface ClipCapturedEvent {
  clipId: string;
  part: number;
  objectId: string;
  bytes: number;
  frames: number;
  transferSyntaxUid: string;
}

export interface ClipStoreFailedEvent {
  clipId: string;
  part: number;
  code: string;
  reason: string;
}

interface ClipCaptureEvents {
  clipCaptured: [ClipCapturedEvent];
  clipStoreFailed: [ClipStoreFailedEvent];
}

/**
 * Turns each closed clip file into a Video Endoscopic Image in the spool. It
 * picks the H.264 transfer syntax from the stream's own SPS and allocates the
 * instance in the open exam's clip series, or in the unidentified-patient
 * study. Then it builds the object and removes the file. Clips are stored one
 * after another, in the order they closed.
 */
export class ClipCapture extends EventEmitter<ClipCaptureEvents> {
  private readonly options: ClipCaptureOptions;
  private readonly log: Logger;
  private readonly context: CaptureContext;
  private chain: Promise<void> = Promise.resolve();

  constructor(options: ClipCaptureOptions) {
    super();
    this.options = options;
    this.log = options.log.child({ component: 'clip-capture' });
    this.context = captureContextOrUnidentified(options.context, options);
  }

  /** Queues a closed clip file for storing. */
  store(closed: ClipClosedEvent): Promise<void> {
    const run = this.chain.then(() => this.storeNow(closed));
    this.chain = run;
    return run;
  }

  /** Resolves when every queued clip has been stored or has failed. */
  drain(): Promise<void> {
    return this.chain;
  }

  private async storeNow(closed: ClipClosedEvent): Promise<void> {
    const { clipId, part } = closed;
    let captured: ClipCapturedEvent;
    try {
      captured = await this.build(closed);
    } catch (error) {
      const code = error instanceof EndocapError ? error.code : ErrorCodes.DICOM_BUILD_FAILED;
      this.log.error({ clipId, part, code, err: { message: errorMessage(error) } }, 'clip capture failed');
      this.emit('clipStoreFailed', { clipId, part, code, reason: errorMessage(error) });
      return;
    } finally {
      await rm(closed.file.path, { force: true }).catch((error: unknown) => this.log.warn({ clipId, err: errorMessage(error) }, 'clip file not removed'));
    }
    this.emit('clipCaptured', captured);
  }

  /** Builds the object from the clip file and writes it to the spool. */
  private async build(closed: ClipClosedEvent): Promise<ClipCapturedEvent> {
    const { profile, spool } = this.options;
    const { clipId, part, file } = closed;
    const { stream } = file;
    const choice = chooseH264TransferSyntax({ ...stream.sps, frameRate: stream.frameRate });
    if (!choice.ok) {
      throw new EndocapError(ErrorCodes.CLIP_NOT_DICOM_COMPLIANT, `H.264 stream fits no DICOM transfer syntax: ${choice.reason}`);
    }

    const video = await readFile(file.path);
    const acquiredAt = new Date(file.firstArrivedAt);
    let slot: CaptureSlot | undefined;
    try {
      slot = await this.context.allocate('clip', acquiredAt);
      const { sopInstanceUid } = slot;
      const region = profile.clip.anatomicRegion;
      const part10 = slot.finish(
        buildVideoEndoscopicImage({
          stream: video,
          transferSyntaxUid: choice.transferSyntaxUid,
          numberOfFrames: file.frames,
          frameRate: stream.frameRate,
          width: stream.width,
          height: stream.height,
          acquiredAt,
          sopInstanceUid,
          station: {
            ...profile.station,
            deviceSerialNumber: profile.station.deviceSerialNumber ?? this.options.boxId,
            softwareVersion: this.options.softwareVersion,
          },
          study: slot.study,
          series: slot.series,
          instanceNumber: slot.instanceNumber,
          anatomicRegion: { codeValue: region.codeValue, codingSchemeDesignator: region.codingSchemeDesignator, codeMeaning: region.codeMeaning, paired: region.paired },
          burnedInAnnotation: profile.image.textRemovedByMasks ? 'NO' : 'YES',
        }),
      );

      if (part10.length > this.options.maxObjectBytes) {
        this.log.warn({ clipId, part, bytes: part10.length, maxObjectBytes: this.options.maxObjectBytes }, 'clip object larger than the destinations accept');
      }
      const entry = await spool.add(part10, { sopClassUid: VIDEO_ENDOSCOPIC_IMAGE_STORAGE, sopInstanceUid, transferSyntaxUid: choice.transferSyntaxUid });
      await slot.stored();
      this.log.info(
        {
          clipId,
          part,
          objectId: entry.id,
          examId: slot.examId,
          bytes: entry.bytes,
          frames: file.frames,
          durationMs: file.lastArrivedAt - file.firstArrivedAt,
          transferSyntax: choice.name,
          endReason: closed.endReason,
        },
        'clip captured',
      );
      return { clipId, part, objectId: entry.id, bytes: entry.bytes, frames: file.frames, transferSyntaxUid: choice.transferSyntaxUid };
    } finally {
      slot?.settle();
    }
  }
}
