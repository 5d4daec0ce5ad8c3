import { access, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ClipCapture, type ClipCapturedEvent, type ClipStoreFailedEvent } from '../../src/daemon/clip-capture.js';
import { createUidGenerator } from '../../src/dicom/uid.js';
import { VIDEO_ENDOSCOPIC_IMAGE_STORAGE } from '../../src/dicom/video-endoscopic.js';
import { MPEG4_HIGH_PROFILE_LEVEL_41 } from '../../src/dicom/video-transfer-syntax.js';
import { ErrorCodes } from '../../src/errors.js';
import { parseProfile } from '../../src/profile/load-profile.js';
import type { Profile } from '../../src/profile/schema.js';
import { Spool } from '../../src/spool/spool.js';
import { AppState } from '../../src/state/app-state.js';
import { parameterSets, parseSps } from '../../src/video/h264-bitstream.js';
import type { ClipClosedEvent } from '../../src/video/clip-recorder.js';
import { pixelDataStructure, readAttributes, validateIod } from '../helpers/dicom-tools.js';
import { runFfmpeg, silentLog } from '../video/helpers.js';

const root = path.resolve(import.meta.dirname, '../..');
const directory = await mkdtemp(path.join(tmpdir(), 'endocap-clip-capture-'));
t.teardown(() => rm(directory, { recursive: true, force: true }));

/** Makes an MPEG-TS clip with the ffmpeg CLI, described as the recorder hands it over. */
async function clipFile(name: string, rate: number, frames = 25): Promise<ClipClosedEvent> {
  const ts = path.join(directory, `${name}.ts`);
  await runFfmpeg(['-f', 'lavfi', '-i', `testsrc2=s=320x240:r=${rate}`, '-frames:v', String(frames), '-c:v', 'libx264', '-profile:v', 'high', '-pix_fmt', 'yuv420p', '-bsf:v', 'h264_mp4toannexb', '-f', 'mpegts', ts]);
  const h264 = path.join(directory, `${name}.h264`);
  await runFfmpeg(['-i', ts, '-c', 'copy', '-f', 'h264', h264]);
  const { sps, pps } = parameterSets(await readFile(h264));
  if (sps === undefined || pps === undefined) throw new Error('no SPS in the test stream');
  const parsed = parseSps(sps);
  const stream = { width: parsed.width, height: parsed.height, frameRate: rate, timeBase: { num: 1, den: rate }, sps: parsed, parameterSets: Buffer.concat([sps, pps]), encoder: 'libx264', generation: 1 };
  const now = Date.now();
  return { clipId: `clip-${name}`, part: 1, endReason: 'stopped', file: { path: ts, stream, frames, packetBytes: 0, firstArrivedAt: now - 1_000, lastArrivedAt: now } };
}

async function setUp(t: Test, image: unknown, maxBytes?: number) {
  const base = await readFile(path.join(root, 'hw-profiles/simulator.yaml'), 'utf8');
  const profile: Profile = { ...parseProfile(base, path.join(root, 'hw-profiles/simulator.yaml')), image: image as Profile['image'] };
  const work = await mkdtemp(path.join(directory, 'run-'));
  const state = await AppState.open(path.join(work, 'state'));
  const spool = new Spool({ directory: path.join(work, 'spool'), destinations: [{ name: 'pacs', commitment: false }], maxBytes, log: silentLog });
  await spool.open();
  t.teardown(() => spool.close());
  const capture = new ClipCapture({
    profile,
    boxId: 'test-box',
    softwareVersion: '0.1.0',
    spool,
    state,
    newUid: createUidGenerator('1.2.826.0.1.3680043.10.999'),
    maxObjectBytes: 2 ** 31,
    log: silentLog,
  });
  const captured: ClipCapturedEvent[] = [];
  const failed: ClipStoreFailedEvent[] = [];
  capture.on('clipCaptured', (event) => captured.push(event));
  capture.on('clipStoreFailed', (event) => failed.push(event));
  return { spool, capture, captured, failed, work };
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

t.test('clip becomes a valid video object in the spool', async (t) => {
  const { spool, capture, captured, failed, work } = await setUp(t, { masks: [], textRemovedByMasks: false });
  const closed = await clipFile('valid', 25);
  await capture.store(closed);

  t.same(failed, []);
  t.equal(captured.length, 1);
  t.equal(captured[0]?.transferSyntaxUid, MPEG4_HIGH_PROFILE_LEVEL_41);
  t.notOk(await exists(closed.file.path), 'the clip file is removed once spooled');
  const [entry] = spool.list();
  t.equal(entry?.sopClassUid, VIDEO_ENDOSCOPIC_IMAGE_STORAGE);
  t.equal(entry?.transferSyntaxUid, MPEG4_HIGH_PROFILE_LEVEL_41);

  const file = path.join(work, 'object.dcm');
  await writeFile(file, await spool.read(entry?.id ?? ''));
  t.same((await validateIod(file)).errors, [], 'dciodvfy finds no errors');
  const structure = await pixelDataStructure(file);
  t.equal(structure.offsetTableLength, 0);
  t.equal(structure.fragments.length, 1);
  const attributes = await readAttributes(file, ['BurnedInAnnotation', 'NumberOfFrames', 'PatientID', 'InstanceNumber']);
  t.equal(attributes.BurnedInAnnotation, 'YES', 'text on screen unless the profile says masks remove it');
  t.equal(attributes.NumberOfFrames, '25');
  t.match(attributes.PatientID, /^UNID-test-box-/);
  t.equal(attributes.InstanceNumber, '1');
});

t.test('clip burned-in annotation follows the profile', async (t) => {
  const { spool, capture, work } = await setUp(t, { masks: [{ x: 0, y: 0, width: 100, height: 240 }], textRemovedByMasks: true });
  await capture.store(await clipFile('masked', 25));
  const file = path.join(work, 'object.dcm');
  await writeFile(file, await spool.read(spool.list()[0]?.id ?? ''));
  t.equal((await readAttributes(file, ['BurnedInAnnotation'])).BurnedInAnnotation, 'NO');
});

t.test('clip at a frame rate no transfer syntax allows is rejected', async (t) => {
  const { spool, capture, captured, failed } = await setUp(t, { masks: [], textRemovedByMasks: false });
  const closed = await clipFile('rate24', 24);
  await capture.store(closed);
  t.same(captured, []);
  t.same(failed, [
    {
      clipId: 'clip-rate24',
      part: 1,
      code: ErrorCodes.CLIP_NOT_DICOM_COMPLIANT,
      reason: 'H.264 stream fits no DICOM transfer syntax: frame rate 24 is not 25, 29.97, 30, 50, 59.94 or 60 frames per second',
    },
  ]);
  t.same(spool.list(), [], 'nothing spooled');
  t.notOk(await exists(closed.file.path), 'the clip file is removed');
});

t.test('clip rejected by a full spool keeps earlier objects', async (t) => {
  const small = await clipFile('small', 25, 5);
  const large = await clipFile('large', 25, 250);
  const smallBytes = (await readFile(small.file.path)).length;
  const { spool, capture, captured, failed, work } = await setUp(t, { masks: [], textRemovedByMasks: false }, smallBytes + 100_000);
  const kept = path.join(work, 'kept.ts');
  await copyFile(small.file.path, kept);

  await capture.store(small);
  await capture.store(large);
  t.equal(captured.length, 1, 'the first clip is stored');
  t.equal(failed.length, 1, 'the second clip fails');
  t.equal(failed[0]?.code, ErrorCodes.SPOOL_FULL);
  t.equal(failed[0]?.clipId, 'clip-large');
  const entries = spool.list();
  t.equal(entries.length, 1, 'the earlier object is still spooled');
  const object = await spool.read(entries[0]?.id ?? '');
  t.ok(object.includes(await readFile(kept)), 'with its video intact');
});

t.test('clip is filed in the capture context', async (t) => {
  const base = await readFile(path.join(root, 'hw-profiles/simulator.yaml'), 'utf8');
  const profile: Profile = { ...parseProfile(base, path.join(root, 'hw-profiles/simulator.yaml')), image: { masks: [], textRemovedByMasks: false } as Profile['image'] };
  const work = await mkdtemp(path.join(directory, 'context-'));
  const spool = new Spool({ directory: path.join(work, 'spool'), destinations: [{ name: 'pacs', commitment: false }], log: silentLog });
  await spool.open();
  t.teardown(() => spool.close());
  const newUid = createUidGenerator('1.2.826.0.1.3680043.10.999');
  const calls: string[] = [];
  const slot = {
    examId: 'exam-1',
    sopInstanceUid: newUid(),
    study: { studyInstanceUid: '1.2.826.0.1.3680043.10.999.1', studyId: 'S1', accessionNumber: 'ACC42', studyDate: new Date(), patientName: 'CONTEXT^PATIENT', patientId: 'PID42' },
    series: { seriesInstanceUid: '1.2.826.0.1.3680043.10.999.2', seriesNumber: 2, seriesDate: new Date() },
    instanceNumber: 7,
    finish: (part10: Buffer) => {
      calls.push('finish');
      return part10;
    },
    stored: async () => {
      calls.push('stored');
    },
    settle: () => {
      calls.push('settle');
    },
  };
  const kinds: string[] = [];
  const capture = new ClipCapture({
    profile,
    boxId: 'test-box',
    softwareVersion: '0.1.0',
    spool,
    state: await AppState.open(path.join(work, 'state')),
    newUid,
    maxObjectBytes: 2 ** 31,
    context: {
      allocate: async (kind) => {
        kinds.push(kind);
        return slot;
      },
    },
    log: silentLog,
  });
  await capture.store(await clipFile('context', 25));

  t.same(kinds, ['clip'], 'the slot is allocated as a clip');
  t.same(calls, ['finish', 'stored', 'settle'], 'the exam sees the object built, stored, then settled');
  const [entry] = spool.list();
  t.equal(entry?.sopInstanceUid, slot.sopInstanceUid);
  const file = path.join(work, 'clip.dcm');
  await writeFile(file, await spool.read(entry?.id ?? ''));
  const attributes = await readAttributes(file, ['StudyInstanceUID', 'SeriesInstanceUID', 'AccessionNumber', 'PatientID', 'InstanceNumber', 'SeriesNumber']);
  t.equal(attributes.StudyInstanceUID, slot.study.studyInstanceUid);
  t.equal(attributes.SeriesInstanceUID, slot.series.seriesInstanceUid);
  t.equal(attributes.AccessionNumber, 'ACC42');
  t.equal(attributes.PatientID, 'PID42');
  t.equal(attributes.InstanceNumber, '7');
  t.equal(attributes.SeriesNumber, '2');
});
