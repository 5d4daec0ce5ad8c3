import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildVideoEndoscopicImage, VIDEO_ENDOSCOPIC_IMAGE_STORAGE } from '../../src/dicom/video-endoscopic.js';
import { MPEG4_HIGH_PROFILE_LEVEL_41 } from '../../src/dicom/video-transfer-syntax.js';
import { Sender, type ObjectStoredEvent, type StoreFailedEvent } from '../../src/pacs/sender.js';
import type { StoreObject } from '../../src/pacs/store-scu.js';
import { pixelDataStructure, probeVideo } from '../helpers/dicom-tools.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { runFfmpeg } from '../video/helpers.js';
import { destinationFor, memoryLogger, MemoryQueue } from './fixtures.js';
import { startStorescp } from './peers.js';

const directory = await mkdtemp(join(tmpdir(), 'endocap-clip-delivery-'));
t.teardown(() => rm(directory, { recursive: true, force: true }));

/** Builds a Video Endoscopic Image of 25 frames, with H.264 made by the ffmpeg CLI. */
async function clipObject(): Promise<StoreObject> {
  const ts = join(directory, 'clip.ts');
  await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25', '-frames:v', '25', '-c:v', 'libx264', '-profile:v', 'high', '-pix_fmt', 'yuv420p', '-f', 'mpegts', ts]);
  const root = '1.2.826.0.1.3680043.10.999';
  const sopInstanceUid = `${root}.7.1`;
  const part10 = buildVideoEndoscopicImage({
    stream: await readFile(ts),
    transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_41,
    numberOfFrames: 25,
    frameRate: 25,
    width: 320,
    height: 240,
    acquiredAt: new Date(),
    sopInstanceUid,
    station: { aeTitle: 'ENDOCAP', stationName: 'ROOM1', institutionName: '', departmentName: '', uidRoot: root, deviceSerialNumber: 'BOX1', softwareVersion: '0.1.0' },
    study: { studyInstanceUid: `${root}.7`, studyId: 'S1', accessionNumber: '', studyDate: new Date(), patientName: 'TEST^CLIP', patientId: 'CLIP1' },
    series: { seriesInstanceUid: `${root}.7.2`, seriesNumber: 1, seriesDate: new Date() },
    instanceNumber: 1,
    anatomicRegion: { codeValue: '71854001', codingSchemeDesignator: 'SCT', codeMeaning: 'Colon', paired: false },
  });
  return { id: 'clip-1', part10, sopClassUid: VIDEO_ENDOSCOPIC_IMAGE_STORAGE, sopInstanceUid, transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_41 };
}

t.test('clip waits for a peer that accepts H.264', async (t) => {
  const clip = await clipObject();
  const port = await freePort();
  const uncompressedOnly = join(directory, 'uncompressed-only');
  const accepting = join(directory, 'accepting');
  await mkdir(uncompressedOnly);
  await mkdir(accepting);

  // Without +xa storescp accepts uncompressed transfer syntaxes only.
  const first = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: uncompressedOnly });
  t.teardown(() => first.stop());

  const queue = new MemoryQueue();
  queue.add(clip, ['test-pacs']);
  const { log } = memoryLogger('info');
  const sender = new Sender({ destination: destinationFor(port, { retry: { initialMs: 200, maxMs: 400, multiplier: 2 } }), callingAeTitle: 'ENDOCAP', queue, log });
  const failures: StoreFailedEvent[] = [];
  const stored: ObjectStoredEvent[] = [];
  sender.on('storeFailed', (event) => failures.push(event));
  sender.on('objectStored', (event) => stored.push(event));
  sender.on('objectSetAside', () => t.fail('the clip must not be set aside'));
  t.teardown(() => sender.stop());
  sender.start();

  await waitFor(() => failures.length >= 2, 15_000, 'two failed attempts');
  t.equal(failures[0]?.willRetry, true, 'reported as a failure that will be retried');
  t.equal(
    failures[0]?.reason,
    `no acceptable presentation context: the peer accepted none for SOP class ${VIDEO_ENDOSCOPIC_IMAGE_STORAGE} in transfer syntax ${MPEG4_HIGH_PROFILE_LEVEL_41}`,
  );
  t.equal(queue.state('clip-1', 'test-pacs'), 'queued', 'the clip stays queued');
  t.same(await readdir(uncompressedOnly), [], 'nothing reached the peer');
  t.notOk(queue.calls.some((call) => call.kind === 'set-aside'));

  // A peer that accepts every supported syntax, H.264 included, now listens on the same address.
  await first.stop();
  const second = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: accepting, args: ['+xa'] });
  t.teardown(() => second.stop());
  await waitFor(() => stored.length === 1, 15_000, 'the clip to be stored');
  t.equal(queue.state('clip-1', 'test-pacs'), 'stored');

  const files = await readdir(accepting);
  t.equal(files.length, 1, 'storescp wrote the clip');
  const storedFile = join(accepting, files[0] ?? '');
  const extracted = join(directory, 'stored.ts');
  const structure = await pixelDataStructure(storedFile, extracted);
  t.equal(structure.transferSyntax, MPEG4_HIGH_PROFILE_LEVEL_41);
  t.equal(structure.offsetTableLength, 0, 'empty offset table at the peer');
  t.equal(structure.fragments.length, 1, 'one fragment at the peer');
  t.equal((await probeVideo(extracted)).frames, 25, 'the stored stream decodes');
});
