import { mkdir, rm, writeFile } from 'node:fs/promises';
import t from 'tap';
import { ErrorCodes, type EndocapError } from '../../src/errors.js';
import { probeVideo } from '../helpers/dicom-tools.js';
import { startClipHarness } from './clip-harness.js';
import { waitFor } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test('clip without video signal fails at once', async (t) => {
  const harness = await startClipHarness(t, { source: { kind: 'file', url: '/nonexistent/endocap-no-video.ts' } });
  harness.recorder.toggle(Date.now());
  t.same(harness.failed, [{ code: ErrorCodes.CLIP_NO_SIGNAL, reason: 'no video signal' }]);
  t.notOk(harness.recorder.recording, 'nothing is recording');
  t.same(harness.started, []);
});

t.test('signal lost mid-clip keeps the clip and goes on', async (t) => {
  // The graph ends after 2.5 s; the source reopens it after 200 ms and it starts over.
  const harness = await startClipHarness(t, {
    source: { kind: 'lavfi', url: 'testsrc2=s=320x240:r=25:d=2.5,realtime' },
    video: { reopen: { initialMs: 200, maxMs: 400, multiplier: 2 } },
  });
  await harness.warmUp(1);
  harness.recorder.toggle(Date.now());

  const [lost] = await harness.waitForClosed(1, 5_000);
  t.equal(lost?.endReason, 'signal-lost', 'the clip file closes at the loss');
  t.ok((lost?.file.frames ?? 0) > 0);
  t.equal((await probeVideo(lost?.file.path ?? '')).frames, lost?.file.frames, 'the part before the loss decodes');

  await waitFor(() => harness.started.some((event) => event.part === 2), 5_000, 'recording to go on after the signal returns');
  t.ok(harness.recorder.recording, 'still recording');
  await sleep(700);
  harness.recorder.toggle(Date.now());
  const closed = await harness.waitForClosed(2, 5_000);
  t.equal(closed[1]?.part, 2);
  t.equal(closed[1]?.endReason, 'stopped');
  t.equal(closed[1]?.clipId, lost?.clipId, 'same recording');
  t.equal((await probeVideo(closed[1]?.file.path ?? '')).frames, closed[1]?.file.frames, 'the part after the loss decodes');
  t.same(harness.failed, []);
});

t.test('clip file that cannot be written fails, the next one works', async (t) => {
  const harness = await startClipHarness(t, { source: { kind: 'lavfi', url: 'testsrc2=s=320x240:r=25,realtime' } });
  await harness.warmUp(1);

  // A plain file where the clip folder was: creating the clip file fails.
  await rm(harness.scratchDirectory, { recursive: true, force: true });
  await writeFile(harness.scratchDirectory, 'not a folder');
  harness.recorder.toggle(Date.now());
  await waitFor(() => harness.failed.length > 0, 5_000, 'the clip to fail');
  t.equal(harness.failed[0]?.code, ErrorCodes.CLIP_WRITE_FAILED);
  t.match(harness.failed[0]?.reason, /^opening the clip file failed: /);
  t.notOk(harness.recorder.recording, 'the failed clip is no longer recording');

  await rm(harness.scratchDirectory, { force: true });
  await mkdir(harness.scratchDirectory);
  const startedAt = Date.now();
  harness.recorder.toggle(startedAt);
  await sleep(500);
  harness.recorder.toggle(startedAt + 500);
  const [closed] = await harness.waitForClosed(1);
  t.equal((await probeVideo(closed?.file.path ?? '')).frames, closed?.file.frames, 'the next clip is recorded');
});

t.test('crop outside the frame is reported once', async (t) => {
  const harness = await startClipHarness(t, {
    source: { kind: 'lavfi', url: 'testsrc2=s=320x240:r=25,realtime' },
    image: { crop: { x: 0, y: 0, width: 640, height: 480 } },
  });
  const failures: EndocapError[] = [];
  harness.source.on('failed', (error) => failures.push(error));
  await waitFor(() => failures.length > 0, 10_000, 'the encoder to fail');
  await sleep(500);
  t.equal(failures.length, 1, 'reported once, not per frame');
  t.equal(failures[0]?.code, ErrorCodes.IMAGE_AREA_INVALID);
  t.equal(failures[0]?.message, 'image.crop (640x480 at 0,0) does not fit inside the 320x240 video frame');
  t.equal(harness.source.ring.status().packets, 0, 'no packets');

  harness.recorder.toggle(Date.now());
  t.notOk(harness.recorder.recording, 'a clip does not start');
  t.same(harness.failed, [{ code: ErrorCodes.IMAGE_AREA_INVALID, reason: 'image.crop (640x480 at 0,0) does not fit inside the 320x240 video frame' }]);
});
