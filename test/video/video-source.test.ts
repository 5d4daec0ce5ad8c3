import t, { type Test } from 'tap';
import { mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EndocapError, ErrorCodes } from '../../src/errors.js';
import { VideoSource, type OpenFailedEvent, type SignalAcquiredEvent, type SignalLostEvent } from '../../src/video/video-source.js';
import { capturingLog, freeUdpPort, killProcess, nextEvent, runFfmpeg, silentLog, startFfmpeg, videoConfig, waitFor } from './helpers.js';

/** Quick retries so that the reopen cases finish in seconds. */
const FAST_REOPEN = { initialMs: 100, maxMs: 400, multiplier: 2 };

interface Recorded {
  acquired: SignalAcquiredEvent[];
  lost: SignalLostEvent[];
  openFailed: OpenFailedEvent[];
}

function record(source: VideoSource): Recorded {
  const events: Recorded = { acquired: [], lost: [], openFailed: [] };
  source.on('signalAcquired', (event) => events.acquired.push(event));
  source.on('signalLost', (event) => events.lost.push(event));
  source.on('openFailed', (event) => events.openFailed.push(event));
  return events;
}

/** Writes a one-second 320x240 25 fps MPEG-TS clip, renamed into place so that no reader sees half a file. */
async function writeClip(path: string): Promise<void> {
  const partial = `${path}.partial.ts`;
  await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25', '-t', '1', '-c:v', 'mpeg2video', '-q:v', '5', partial]);
  await rename(partial, path);
}

async function tempDir(t: Test): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'endocap-video-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

t.test('lavfi source fills a bounded ring', async (t) => {
  const source = new VideoSource({
    config: videoConfig({ source: { kind: 'lavfi', url: 'testsrc2=s=320x240:r=30,realtime' }, ringFrames: 3 }),
    log: silentLog,
  });
  t.teardown(() => source.stop());
  const acquired = nextEvent<SignalAcquiredEvent>(source, 'signalAcquired', 10_000);
  await source.start();

  t.same(await acquired, { width: 320, height: 240, pixelFormat: 'yuv420p', frameRate: 30 });
  await waitFor(() => source.status().framesDecoded >= 15, 10_000, '15 decoded frames');
  const status = source.status();
  t.equal(status.signal, true);
  t.equal(status.framesKept, 3, 'ring holds exactly ringFrames frames');
  t.equal(status.width, 320);
  t.equal(status.height, 240);
  t.ok(status.fps > 0, `fps ${status.fps} is measured`);
  t.equal(status.framesDropped, 0);
  t.equal(status.reopenCount, 0);

  await source.stop();
  t.equal(source.status().framesKept, 0, 'stop frees the ring');
  t.equal(source.status().signal, false);
});

t.test('missing file retries with backoff until it appears', async (t) => {
  const directory = await tempDir(t);
  const path = join(directory, 'tower.ts');
  const source = new VideoSource({
    config: videoConfig({ source: { kind: 'file', url: path }, reopen: FAST_REOPEN, signalTimeoutMs: 1_000 }),
    log: silentLog,
  });
  const events = record(source);
  t.teardown(() => source.stop());

  await source.start();
  await waitFor(() => events.openFailed.length >= 3, 10_000, 'three failed opens');
  t.same(events.openFailed.map((event) => event.attempt).slice(0, 3), [1, 2, 3], 'attempts are counted');
  for (const event of events.openFailed) t.ok(event.retryInMs <= FAST_REOPEN.maxMs, `retry delay ${event.retryInMs} ms is capped`);
  t.same(events.lost, [{ reason: 'open failed' }], 'loss is reported once, not per attempt');
  t.equal(source.status().signal, false);
  t.ok(source.status().reopenCount >= 2, 'reopen attempts are counted');

  const acquired = nextEvent<SignalAcquiredEvent>(source, 'signalAcquired', 10_000);
  await writeClip(path);
  t.match(await acquired, { width: 320, height: 240, frameRate: 25 });
  t.equal(source.status().signal, true);
});

t.test('missing capture device does not throw', async (t) => {
  const source = new VideoSource({
    config: videoConfig({ source: { kind: 'v4l2', url: '/dev/video-endocap-missing', width: 640, height: 480 }, reopen: FAST_REOPEN }),
    log: silentLog,
  });
  const events = record(source);
  t.teardown(() => source.stop());

  await source.start();
  await waitFor(() => events.openFailed.length >= 2, 10_000, 'two failed opens');
  t.same(events.lost, [{ reason: 'open failed' }]);
  t.equal(events.acquired.length, 0);
  const error = await source.captureStill(Date.now(), { jpegQuality: 90 }).catch((caught: unknown) => caught);
  t.ok(error instanceof EndocapError && error.code === ErrorCodes.VIDEO_NO_FRAME, 'still fails with VIDEO_NO_FRAME');
});

t.test('file loops at its own frame rate without losing signal', async (t) => {
  const directory = await tempDir(t);
  const path = join(directory, 'tower.ts');
  await writeClip(path);
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'file', url: path }, reopen: FAST_REOPEN }), log: silentLog });
  const events = record(source);
  t.teardown(() => source.stop());

  const startedAt = Date.now();
  await source.start();
  await waitFor(() => source.status().framesDecoded >= 40, 10_000, '40 decoded frames, more than one pass of 25');
  const elapsedMs = Date.now() - startedAt;
  t.equal(events.lost.length, 0, 'no loss of signal at end of file');
  t.equal(events.acquired.length, 1, 'signal acquired once');
  t.ok(source.status().reopenCount >= 1, 'the file was reopened');
  // Unpaced, 40 frames of 320x240 decode in a few milliseconds.
  t.ok(elapsedMs >= 1_000, `40 frames at 25 fps took ${elapsedMs} ms, so the file is paced`);
});

t.test('file removed mid-stream is lost, then found again', async (t) => {
  const directory = await tempDir(t);
  const path = join(directory, 'tower.ts');
  await writeClip(path);
  const source = new VideoSource({
    config: videoConfig({ source: { kind: 'file', url: path }, reopen: FAST_REOPEN, signalTimeoutMs: 1_000 }),
    log: silentLog,
  });
  t.teardown(() => source.stop());

  const acquired = nextEvent(source, 'signalAcquired', 10_000);
  await source.start();
  await acquired;

  // The open file keeps playing, so the loss shows when the pass ends and the reopen fails.
  const lost = nextEvent<SignalLostEvent>(source, 'signalLost', 5_000);
  await unlink(path);
  t.same(await lost, { reason: 'open failed' });
  t.equal(source.status().framesKept, 0, 'frames from before the loss are dropped');
  const error = await source.captureStill(Date.now(), { jpegQuality: 90 }).catch((caught: unknown) => caught);
  t.ok(error instanceof EndocapError && error.code === ErrorCodes.VIDEO_NO_FRAME, 'no still from an old frame during the outage');

  const reacquired = nextEvent(source, 'signalAcquired', 10_000);
  await writeClip(path);
  await reacquired;
  t.equal(source.status().signal, true);
});

t.test('udp stream that goes quiet is lost and reacquired', async (t) => {
  const port = await freeUdpPort();
  const feederArgs = ['-re', '-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25', '-c:v', 'mpeg2video', '-q:v', '5', '-f', 'mpegts', `udp://127.0.0.1:${port}?pkt_size=1316`];
  const signalTimeoutMs = 1_000;
  const source = new VideoSource({
    config: videoConfig({ source: { kind: 'network', url: `udp://127.0.0.1:${port}`, format: 'mpegts' }, signalTimeoutMs, reopen: FAST_REOPEN }),
    log: silentLog,
  });
  const events = record(source);
  let feeder = startFfmpeg(feederArgs);
  t.teardown(async () => {
    await killProcess(feeder);
    await source.stop();
  });

  const acquired = nextEvent(source, 'signalAcquired', 15_000);
  await source.start();
  await acquired;

  // A stopped sender produces no error on the receiving side: only silence.
  const lost = nextEvent<SignalLostEvent>(source, 'signalLost', signalTimeoutMs + 2_000);
  const pausedAt = Date.now();
  feeder.kill('SIGSTOP');
  t.same(await lost, { reason: 'timeout' });
  const lossDelayMs = Date.now() - pausedAt;
  t.ok(lossDelayMs >= signalTimeoutMs - 100, `loss reported after ${lossDelayMs} ms, not before the signal timeout`);
  t.equal(source.status().signal, false);

  await killProcess(feeder);
  const reacquired = nextEvent(source, 'signalAcquired', 15_000);
  feeder = startFfmpeg(feederArgs);
  await reacquired;
  t.equal(events.acquired.length, 2);
  t.equal(events.lost.length, 1);
  t.equal(source.status().signal, true);
});

t.test('stop returns while a udp read is blocked', async (t) => {
  const port = await freeUdpPort();
  const stopTimeoutMs = 1_000;
  const signalTimeoutMs = 3_000;
  const { log, messages } = capturingLog();
  const source = new VideoSource({
    config: videoConfig({ source: { kind: 'network', url: `udp://127.0.0.1:${port}`, format: 'mpegts' }, signalTimeoutMs }),
    log,
    stopTimeoutMs,
  });
  const feeder = startFfmpeg(['-re', '-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25', '-c:v', 'mpeg2video', '-f', 'mpegts', `udp://127.0.0.1:${port}?pkt_size=1316`]);
  t.teardown(() => killProcess(feeder));

  const acquired = nextEvent(source, 'signalAcquired', 15_000);
  await source.start();
  await acquired;
  await killProcess(feeder);
  // Let the receive buffer drain, so that the read is blocked on silence.
  await new Promise((resolve) => setTimeout(resolve, 300));

  const stoppingAt = Date.now();
  await source.stop();
  const stopMs = Date.now() - stoppingAt;
  t.ok(stopMs <= stopTimeoutMs + 500, `stop took ${stopMs} ms, within its ${stopTimeoutMs} ms bound`);
  t.equal(source.status().framesKept, 0);
  t.ok(messages.includes('video decode loop did not stop in time'), 'the blocked read is reported');

  // The input is closed once the read returns at the UDP timeout, not while it is blocked.
  await waitFor(() => messages.includes('video input closed'), signalTimeoutMs + 3_000, 'the input to close');
});

t.test('listener that throws does not end decoding', async (t) => {
  const source = new VideoSource({ config: videoConfig({ source: { kind: 'lavfi', url: 'testsrc2=s=160x120:r=30,realtime' } }), log: silentLog });
  t.teardown(() => source.stop());
  source.on('signalAcquired', () => {
    throw new Error('listener failure planted by the test');
  });
  await source.start();
  await waitFor(() => source.status().framesDecoded >= 10, 10_000, '10 decoded frames after the failing listener');
  t.equal(source.status().signal, true);
});
