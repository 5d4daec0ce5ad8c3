import { EventEmitter } from 'node:events';
import path from 'node:path';
import { MAX_VIDEO_OBJECT_BYTES } from '../dicom/video-endoscopic.js';
import type { Logger } from '../log.js';
import type { Profile } from '../profile/schema.js';
import type { AppState } from '../state/app-state.js';
import type { Spool } from '../spool/spool.js';
import { ClipRecorder } from '../video/clip-recorder.js';
import { ClipSource } from '../video/clip-source.js';
import type { VideoSource } from '../video/video-source.js';
import { ClipCapture } from './clip-capture.js';
import type { CaptureContext } from './exam-capture.js';

export interface ClipPipelineOptions {
  profile: Profile;
  boxId: string;
  softwareVersion: string;
  video: VideoSource;
  spool: Pick<Spool, 'add'>;
  state: AppState;
  newUid: () => string;
  /** Capture context of clips: the open exam, or the unidentified-patient study when absent. */
  context?: CaptureContext;
  log: Logger;
}

/** Operator-facing clip events; ids and reasons only, never patient data. */
export interface ClipPipelineEvents {
  clipStarted: [{ clipId: string; part: number; preRecordMs: number }];
  clipCaptured: [{ clipId: string; part: number; objectId: string; bytes: number; frames: number }];
  clipFailed: [{ clipId?: string; part?: number; code: string; reason: string }];
}

/** True when a pedal gesture of the profile records clips. */
export function profileRecordsClips(profile: Profile): boolean {
  const footswitch = profile.footswitch;
  if (footswitch.kind === 'none') return false;
  return Object.values(footswitch.gestures).includes('clip');
}

/**
 * Smallest object size any destination accepts, capped at MAX_VIDEO_OBJECT_BYTES.
 * Every object goes to every destination, so the smallest limit applies.
 */
export function maxObjectBytes(profile: Profile): number {
  return Math.min(MAX_VIDEO_OBJECT_BYTES, ...profile.destinations.map((destination) => destination.maxObjectBytes ?? MAX_VIDEO_OBJECT_BYTES));
}

/**
 * Clips from pedal to spool: the continuous pre-record stream, the recorder
 * the pedal toggles, and the step that stores each closed clip file as a
 * DICOM object. Clip files wait in `<stateDirectory>/clips` while recorded.
 */
export class ClipPipeline extends EventEmitter<ClipPipelineEvents> {
  private readonly source: ClipSource;
  private readonly recorder: ClipRecorder;
  private readonly capture: ClipCapture;
  private readonly log: Logger;

  constructor(options: ClipPipelineOptions) {
    super();
    const { profile, log } = options;
    this.log = log.child({ component: 'clip-pipeline' });
    const limit = maxObjectBytes(profile);
    this.source = new ClipSource({ video: options.video, config: profile.clip, image: profile.image, log });
    this.recorder = new ClipRecorder({
      source: this.source,
      config: profile.clip,
      maxObjectBytes: limit,
      scratchDirectory: path.join(profile.stateDirectory, 'clips'),
      log,
    });
    this.capture = new ClipCapture({
      profile,
      boxId: options.boxId,
      softwareVersion: options.softwareVersion,
      spool: options.spool,
      state: options.state,
      newUid: options.newUid,
      maxObjectBytes: limit,
      ...(options.context ? { context: options.context } : {}),
      log,
    });

    this.recorder.on('clipStarted', (event) => this.emit('clipStarted', event));
    this.recorder.on('clipFailed', (event) => this.emit('clipFailed', event));
    this.recorder.on('clipClosed', (closed) => {
      void this.capture.store(closed);
    });
    this.source.on('failed', (error) => {
      this.emit('clipFailed', { code: error.code, reason: error.message });
    });
    this.capture.on('clipCaptured', (event) => this.emit('clipCaptured', event));
    this.capture.on('clipStoreFailed', (event) => this.emit('clipFailed', event));
  }

  async start(): Promise<void> {
    await this.recorder.start();
    this.source.start();
  }

  /** Starts a clip, or stops the one being recorded. */
  toggle(pressedAt: number): void {
    this.recorder.toggle(pressedAt);
  }

  get recording(): boolean {
    return this.recorder.recording;
  }

  /** Flushes the encoder, closes clips still recording (they are kept) and waits until they are in the spool. */
  async stop(): Promise<void> {
    await this.source.stop();
    await this.recorder.stop();
    await this.capture.drain();
    this.log.info('clip pipeline stopped');
  }
}
