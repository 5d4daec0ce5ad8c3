import { mkdtemp, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { startDaemon } from '../helpers/daemon-process.js';
import { decodedLuma, lumaRange, pixelDataStructure, pixelLevels, probeVideo, readAttributes, validateIod } from '../helpers/dicom-tools.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';

const VIDEO_ENDOSCOPIC = '1.2.840.10008.5.1.4.1.1.77.1.1.1';
const PRE_RECORD_SECONDS = 1;
const KEY_FRAME_INTERVAL_SECONDS = 0.5;
const FRAME_RATE = 30;
/** A square on the white half of the test picture, painted black by the profile. */
const MASK = { x: 400, y: 100, width: 160, height: 160 };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Presses the pedal for `holdMs` and returns the time of the press. */
async function press(pedal: FileHandle, holdMs: number): Promise<number> {
  const at = Date.now();
  await pedal.write(Buffer.from([0x31]));
  await sleep(holdMs);
  await pedal.write(Buffer.from([0x30]));
  return at;
}

t.test('clips from pedal reach Orthanc', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-e2e-clips-'));
  const orthanc = await startOrthanc();
  const broker = await startMosquitto();
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(async () => {
    await pty.unplug();
    await broker.stop();
    await orthanc.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const messages: Array<{ topic: string; payload: string }> = [];
  const observer = await mqtt.connectAsync(broker.url);
  await observer.subscribeAsync('#');
  observer.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  t.teardown(() => observer.endAsync());

  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    destinations: [{ name: 'orthanc', host: '127.0.0.1', port: orthanc.dicomPort, calledAeTitle: orthanc.aeTitle }],
    mqttUrl: broker.url,
    // A short press takes a still, a long press starts a clip and another long press stops it.
    gestures: { short: 'still', long: 'clip' },
    longPressMs: 300,
    sections: {
      clip: { preRecordSeconds: PRE_RECORD_SECONDS, encoder: { preset: 'ultrafast', keyFrameIntervalSeconds: KEY_FRAME_INTERVAL_SECONDS } },
      image: { masks: [MASK], textRemovedByMasks: true },
    },
  });
  let daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('video signal acquired');
  await daemon.waitForLog('footswitch connected');
  await daemon.waitForLog('clip encoder opened');
  // Let the pre-record stream fill.
  await sleep(PRE_RECORD_SECONDS * 1000 + 600);

  const pedal = await open(pty.testPath, 'w');
  t.teardown(() => pedal.close());
  await press(pedal, 60);
  await sleep(400);

  const recordings: number[] = [];
  for (const gapMs of [1_200, 700]) {
    const startedAt = await press(pedal, 400);
    await sleep(gapMs);
    const stoppedAt = await press(pedal, 400);
    recordings.push((stoppedAt - startedAt) / 1000);
    await sleep(800);
  }

  await waitFor(async () => (await orthanc.get<string[]>('/instances')).length >= 3, 60_000, 'a still and two clips in Orthanc');
  const instances = await orthanc.get<string[]>('/instances');
  t.equal(instances.length, 3, 'one still and two clips');

  const clips: string[] = [];
  for (const [index, instanceId] of instances.entries()) {
    const file = path.join(directory, `instance-${index}.dcm`);
    await writeFile(file, await orthanc.file(instanceId));
    const report = await validateIod(file);
    t.same(report.errors, [], `dciodvfy finds no errors in instance ${index}`);
    const attributes = await readAttributes(file, ['SOPClassUID', 'BurnedInAnnotation', 'NumberOfFrames', 'AcquisitionDateTime']);
    t.equal(attributes.BurnedInAnnotation, 'NO', 'the profile says the masks remove all text');
    if (attributes.SOPClassUID === VIDEO_ENDOSCOPIC) {
      clips.push(file);
      continue;
    }
    const levels = await pixelLevels(file, [[MASK.x + 8, MASK.y + 8, MASK.x + MASK.width - 8, MASK.y + MASK.height - 8]]);
    t.ok((levels.regions[0]?.max ?? 255) <= 3, `masked area of the still is black: ${JSON.stringify(levels.regions[0])}`);
  }
  t.equal(clips.length, 2, 'two clips');

  // Clips in Orthanc's order are not in recording order: match them by length.
  const frameCounts: number[] = [];
  for (const [index, file] of clips.entries()) {
    const extracted = path.join(directory, `clip-${index}.ts`);
    const structure = await pixelDataStructure(file, extracted);
    t.equal(structure.offsetTableLength, 0, `clip ${index}: empty Basic Offset Table as stored by Orthanc`);
    t.equal(structure.fragments.length, 1, `clip ${index}: one fragment as stored by Orthanc`);
    const probed = await probeVideo(extracted);
    t.equal(probed.profile, 'High');
    t.equal(String(probed.frames), (await readAttributes(file, ['NumberOfFrames'])).NumberOfFrames, `clip ${index}: NumberOfFrames matches the stream`);
    frameCounts.push(probed.frames);
    const frame = await decodedLuma(extracted, 0);
    const masked = lumaRange(frame, MASK.x + 8, MASK.y + 8, MASK.x + MASK.width - 8, MASK.y + MASK.height - 8);
    t.ok(masked.max <= 24, `clip ${index}: masked area max ${masked.max} is black`);
  }
  frameCounts.sort((a, b) => a - b);
  const durations = [...recordings].sort((a, b) => a - b);
  for (const [index, frames] of frameCounts.entries()) {
    const recorded = durations[index] ?? 0;
    // The recording runs from press to press; the pre-record adds 1 s, and up to one key-frame interval more.
    const low = Math.floor((PRE_RECORD_SECONDS + recorded) * FRAME_RATE) - 6;
    const high = Math.ceil((PRE_RECORD_SECONDS + KEY_FRAME_INTERVAL_SECONDS + recorded) * FRAME_RATE) + 6;
    t.ok(frames >= low && frames <= high, `clip of ${recorded.toFixed(2)} s has ${frames} frames, within ${low}..${high}`);
  }

  await waitFor(() => messages.filter((message) => message.topic.endsWith('/events/clip-captured')).length >= 2, 10_000, 'clip-captured events');
  t.equal(messages.filter((message) => message.topic.endsWith('/events/clip-started')).length, 2, 'a clip-started event per clip');
  t.equal(messages.filter((message) => message.topic.endsWith('/events/clip-failed')).length, 0, 'no clip-failed event');

  // A clip still recording when the daemon stops is closed and kept.
  await press(pedal, 400);
  await daemon.waitForLog('clip started', 3);
  await sleep(1_000);
  t.equal(await daemon.stop(), 0, 'daemon stops cleanly while a clip records');
  t.ok(daemon.lines.some((line) => line.msg === 'clip file closed' && line.endReason === 'shutdown'), 'the clip was closed at shutdown');
  t.equal(daemon.count('clip captured'), 3, 'and stored in the spool');

  // The clip is delivered before the senders stop, or else by the next run.
  daemon = startDaemon(profile);
  await daemon.waitForLog('daemon started');
  await waitFor(async () => (await orthanc.get<string[]>('/instances')).length >= 4, 60_000, 'the kept clip in Orthanc');
  t.equal((await orthanc.get<string[]>('/instances')).length, 4);
  t.equal(await daemon.stop(), 0);
});
