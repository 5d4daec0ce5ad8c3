import { stat } from 'node:fs/promises';
import t from 'tap';
import { estimateObjectBytes } from '../../src/video/clip-recorder.js';
import { probeVideo } from '../helpers/dicom-tools.js';
import { expectedFrameRange, startClipHarness } from './clip-harness.js';

// Small and paced like a capture card; 25 fps is one of the frame rates the H.264 transfer syntaxes allow.
const SOURCE = { kind: 'lavfi', url: 'testsrc2=s=320x240:r=25,realtime' };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('clip holds the pre-record from a key frame', async (t) => {
  const harness = await startClipHarness(t, { source: SOURCE });
  await harness.warmUp(1.5);

  const startedAt = Date.now();
  harness.recorder.toggle(startedAt);
  t.ok(harness.recorder.recording, 'recording after the first press');
  await sleep(1_000);
  harness.recorder.toggle(startedAt + 1_000);
  t.notOk(harness.recorder.recording, 'not recording after the second press');

  const [closed] = await harness.waitForClosed(1);
  const started = harness.started[0];
  t.equal(started?.part, 1);
  // Pre-record of 1 s, starting at a key frame at most 0.5 s earlier.
  t.ok((started?.preRecordMs ?? 0) >= 1_000 && (started?.preRecordMs ?? 0) <= 1_560, `pre-record ${started?.preRecordMs} ms`);
  t.equal(closed?.endReason, 'stopped');

  const [low, high] = expectedFrameRange(1, 1, 0.5, 25);
  const frames = closed?.file.frames ?? 0;
  t.ok(frames >= low && frames <= high, `${frames} frames within ${low}..${high}`);
  const probed = await probeVideo(closed?.file.path ?? '');
  t.equal(probed.frames, frames, 'every frame decodes');
  t.equal(probed.profile, 'High');
  t.equal(probed.level, 41);
  t.same([probed.width, probed.height], [320, 240]);
});

t.test('clip longer than the maximum continues in a new clip', async (t) => {
  // Key frames every 0.52 s (13 frames): two groups fit in 1.2 s, three do not.
  const harness = await startClipHarness(t, { source: SOURCE, clip: { maxSeconds: 1.2, preRecordSeconds: 0.5 } });
  await harness.warmUp(1);

  const startedAt = Date.now();
  harness.recorder.toggle(startedAt);
  await sleep(2_600);
  harness.recorder.toggle(startedAt + 2_600);
  await sleep(1_500);

  const closed = harness.closed;
  t.ok(closed.length >= 3, `${closed.length} consecutive clips`);
  for (const event of closed.slice(0, -1)) t.equal(event.file.frames, 26, `part ${event.part} holds two groups of pictures`);
  t.same(closed.map((event) => event.part), closed.map((_, index) => index + 1), 'parts numbered in order');
  t.same(closed.slice(0, -1).map((event) => event.endReason), closed.slice(0, -1).map(() => 'max-length'));
  t.equal(closed.at(-1)?.endReason, 'stopped');
  t.same(harness.started.map((event) => event.part), closed.map((event) => event.part), 'a start event for each part');
  for (const [index, event] of closed.entries()) {
    t.ok(event.file.frames <= 30, `part ${event.part} has ${event.file.frames} frames, at most 1.2 s`);
    t.equal((await probeVideo(event.file.path)).frames, event.file.frames, `part ${event.part} decodes on its own`);
    const next = closed[index + 1];
    if (next === undefined) continue;
    const gapMs = next.file.firstArrivedAt - event.file.lastArrivedAt;
    t.ok(gapMs > 0 && gapMs <= 80, `part ${next.part} continues ${gapMs} ms after part ${event.part}`);
  }
});

t.test('clip larger than the object limit continues in a new clip', async (t) => {
  // Noise makes about 450 kB per group of pictures (0.5 s), so that two groups
  // fit the limit but not three, long before the time limit.
  const maxObjectBytes = 1_200_000;
  const noisy = { kind: 'lavfi', url: 'testsrc2=s=320x240:r=25,noise=alls=40:allf=t,realtime' };
  const harness = await startClipHarness(t, { source: noisy, maxObjectBytes, clip: { preRecordSeconds: 0.5 } });
  await harness.warmUp(1);

  const startedAt = Date.now();
  harness.recorder.toggle(startedAt);
  await sleep(2_500);
  harness.recorder.toggle(startedAt + 2_500);
  await sleep(1_500);

  const closed = harness.closed;
  t.ok(closed.length >= 2, `${closed.length} clips`);
  t.ok(closed.slice(0, -1).every((event) => event.endReason === 'max-size'), 'all but the last ended at the size limit');
  for (const event of closed) {
    const { size } = await stat(event.file.path);
    t.ok(size + 8 * 1024 <= maxObjectBytes, `part ${event.part}: ${size} bytes of MPEG-TS plus the DICOM header fit in ${maxObjectBytes}`);
    t.ok(estimateObjectBytes(event.file.packetBytes, event.file.frames) >= size, 'the estimate is not below the file size');
    t.equal((await probeVideo(event.file.path)).frames, event.file.frames, `part ${event.part} decodes`);
  }
});

t.test('clip stopped within 100 ms keeps the pre-record', async (t) => {
  const harness = await startClipHarness(t, { source: SOURCE });
  await harness.warmUp(1.5);

  const startedAt = Date.now();
  harness.recorder.toggle(startedAt);
  await sleep(100);
  harness.recorder.toggle(startedAt + 100);

  const [closed] = await harness.waitForClosed(1);
  const [low, high] = expectedFrameRange(1, 0.1, 0.5, 25);
  const frames = closed?.file.frames ?? 0;
  t.ok(frames >= low && frames <= high, `${frames} frames within ${low}..${high}`);
  t.equal((await probeVideo(closed?.file.path ?? '')).frames, frames);
  t.same(harness.failed, []);
});

t.test('clip started while another one is finalized', async (t) => {
  const harness = await startClipHarness(t, { source: SOURCE });
  await harness.warmUp(1.5);

  const startedAt = Date.now();
  harness.recorder.toggle(startedAt);
  await sleep(600);
  // Stop, and start again at once: the first clip still waits for its last packets.
  harness.recorder.toggle(startedAt + 600);
  harness.recorder.toggle(startedAt + 620);
  t.ok(harness.recorder.recording, 'the second clip is recording');
  await sleep(800);
  harness.recorder.toggle(startedAt + 1_420);

  const closed = await harness.waitForClosed(2);
  t.equal(new Set(closed.map((event) => event.clipId)).size, 2, 'two clips');
  for (const event of closed) t.equal((await probeVideo(event.file.path)).frames, event.file.frames, `${event.clipId} decodes`);
  t.same(harness.failed, []);
});
