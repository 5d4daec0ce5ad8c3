import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import type { Logger } from '../../src/log.js';
import { clipSchema, imageSchema, type ClipConfig, type ImageConfig } from '../../src/profile/capture-schema.js';
import { ClipRecorder, type ClipClosedEvent, type ClipFailedEvent, type ClipStartedEvent } from '../../src/video/clip-recorder.js';
import { ClipSource } from '../../src/video/clip-source.js';
import { VideoSource } from '../../src/video/video-source.js';
import { silentLog, videoConfig, waitFor } from './helpers.js';

export interface ClipHarnessOptions {
  /** The video source section of a profile. */
  source: unknown;
  /** Overrides of the profile's clip section. */
  clip?: unknown;
  image?: unknown;
  maxObjectBytes?: number;
  log?: Logger;
  /** Extra video settings, such as a short reopen backoff. */
  video?: Record<string, unknown>;
}

/** A real video source, pre-record stream and recorder, with the events they emitted. */
export interface ClipHarness {
  video: VideoSource;
  source: ClipSource;
  recorder: ClipRecorder;
  config: ClipConfig;
  image: ImageConfig;
  scratchDirectory: string;
  started: ClipStartedEvent[];
  closed: ClipClosedEvent[];
  failed: ClipFailedEvent[];
  /** Waits until the source delivers frames and the ring has held `seconds` of packets. */
  warmUp(seconds: number): Promise<void>;
  waitForClosed(count: number, timeoutMs?: number): Promise<ClipClosedEvent[]>;
}

/** Starts the clip chain on a lavfi or file source; stopped and cleaned up in the test's teardown. */
export async function startClipHarness(t: Test, options: ClipHarnessOptions): Promise<ClipHarness> {
  const scratchDirectory = await mkdtemp(path.join(tmpdir(), 'endocap-clips-'));
  const log = options.log ?? silentLog;
  const config = clipSchema.parse({ preRecordSeconds: 1, encoder: { preset: 'ultrafast', keyFrameIntervalSeconds: 0.5 }, ...(options.clip as object) });
  const image = imageSchema.parse(options.image ?? {});
  const video = new VideoSource({ config: videoConfig({ source: options.source, ...options.video }), log, image });
  const source = new ClipSource({ video, config, image, log });
  const recorder = new ClipRecorder({ source, config, maxObjectBytes: options.maxObjectBytes ?? 2 ** 31, scratchDirectory, log, stopGraceMs: 2_000 });
  const harness: ClipHarness = {
    video,
    source,
    recorder,
    config,
    image,
    scratchDirectory,
    started: [],
    closed: [],
    failed: [],
    async warmUp(seconds: number): Promise<void> {
      await waitFor(() => video.status().signal, 10_000, 'video signal');
      await waitFor(() => source.ring.status().spanMs >= seconds * 1000, 10_000 + seconds * 1000, `${seconds} s of pre-record`);
    },
    async waitForClosed(count: number, timeoutMs = 10_000): Promise<ClipClosedEvent[]> {
      await waitFor(() => harness.closed.length >= count, timeoutMs, `${count} closed clip file(s)`);
      return harness.closed;
    },
  };
  recorder.on('clipStarted', (event) => harness.started.push(event));
  recorder.on('clipClosed', (event) => harness.closed.push(event));
  recorder.on('clipFailed', (event) => harness.failed.push(event));
  t.teardown(async () => {
    await source.stop();
    await recorder.stop();
    await video.stop();
    await rm(scratchDirectory, { recursive: true, force: true });
  });
  await video.start();
  await recorder.start();
  source.start();
  return harness;
}

/** Expected frames of a clip: pre-record plus recording, plus up to one key-frame interval more, with one frame of slack at each end. */
export function expectedFrameRange(preRecordSeconds: number, recordedSeconds: number, keyFrameIntervalSeconds: number, frameRate: number): [number, number] {
  const low = Math.floor((preRecordSeconds + recordedSeconds) * frameRate) - 2;
  const high = Math.ceil((preRecordSeconds + keyFrameIntervalSeconds + recordedSeconds) * frameRate) + 2;
  return [low, high];
}
