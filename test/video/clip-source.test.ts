import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { probeVideo } from '../helpers/dicom-tools.js';
import { startClipHarness } from './clip-harness.js';
import { capturingLog, runFfmpeg } from './helpers.js';

const directory = await mkdtemp(path.join(tmpdir(), 'endocap-clip-source-'));
t.teardown(() => rm(directory, { recursive: true, force: true }));

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Makes an H.264 MPEG-TS file with the ffmpeg CLI, for a source that loops it at its own pace. */
async function h264File(name: string, args: string[]): Promise<string> {
  const file = path.join(directory, `${name}.ts`);
  await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25', '-t', '6', '-c:v', 'libx264', '-g', '12', ...args, '-f', 'mpegts', file]);
  return file;
}

/** Records one clip of `seconds` once the ring contains a second, and returns it. */
async function recordOne(harness: Awaited<ReturnType<typeof startClipHarness>>, seconds: number) {
  await harness.warmUp(1);
  const startedAt = Date.now();
  harness.recorder.toggle(startedAt);
  await sleep(seconds * 1000);
  harness.recorder.toggle(startedAt + seconds * 1000);
  const [closed] = await harness.waitForClosed(1);
  if (closed === undefined) throw new Error('no clip closed');
  return closed;
}

t.test('clip copies H.264 that fits a transfer syntax', async (t) => {
  const file = await h264File('high', ['-profile:v', 'high', '-bf', '2']);
  const harness = await startClipHarness(t, { source: { kind: 'file', url: file } });
  const closed = await recordOne(harness, 1);
  t.equal(harness.source.status().mode, 'copy');
  t.equal(closed.file.stream.encoder, 'source', 'packets copied from the input');
  t.equal(harness.source.status().encoder.framesEncoded, 0, 'nothing encoded');
  const probed = await probeVideo(closed.file.path);
  t.equal(probed.profile, 'High');
  t.equal(probed.frames, closed.file.frames);
});

t.test('clip re-encodes a baseline H.264 source', async (t) => {
  const file = await h264File('baseline', ['-profile:v', 'baseline']);
  const { log, messages } = capturingLog();
  const harness = await startClipHarness(t, { source: { kind: 'file', url: file }, log });
  const closed = await recordOne(harness, 1);
  t.equal(harness.source.status().mode, 'encode');
  t.ok(messages.includes('clips encode the decoded video'), 'the reason is logged');
  t.equal(closed.file.stream.encoder, 'libx264');
  t.equal(closed.file.stream.sps.profileIdc, 100);
  t.equal((await probeVideo(closed.file.path)).profile, 'High');
});

t.test('clip re-encodes when masks change the pixels', async (t) => {
  const file = await h264File('masked', ['-profile:v', 'high']);
  const harness = await startClipHarness(t, { source: { kind: 'file', url: file }, image: { masks: [{ x: 0, y: 0, width: 64, height: 64 }] } });
  const closed = await recordOne(harness, 0.5);
  t.equal(harness.source.status().mode, 'encode');
  t.equal(closed.file.stream.encoder, 'libx264');
});

t.test('missing hardware encoder falls back to libx264', async (t) => {
  const { log, messages } = capturingLog();
  const harness = await startClipHarness(t, {
    source: { kind: 'lavfi', url: 'testsrc2=s=320x240:r=25,realtime' },
    clip: { encoder: { codec: 'h264_vaapi', keyFrameIntervalSeconds: 0.5 } },
    log,
  });
  const closed = await recordOne(harness, 0.5);
  t.ok(messages.includes('hardware clip encoder unavailable, using libx264'), 'the fallback is logged');
  t.equal(closed.file.stream.encoder, 'libx264');
  t.equal(harness.source.status().encoder.encoder, 'libx264');
  const probed = await probeVideo(closed.file.path);
  t.equal(probed.profile, 'High');
  t.equal(probed.frames, closed.file.frames);
});
