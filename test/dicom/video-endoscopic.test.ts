import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { readObjectMetadata } from '../../src/dicom/object-metadata.js';
import { buildVideoEndoscopicImage, VIDEO_ENDOSCOPIC_IMAGE_STORAGE, type VideoEndoscopicInput } from '../../src/dicom/video-endoscopic.js';
import { MPEG4_HIGH_PROFILE_LEVEL_41 } from '../../src/dicom/video-transfer-syntax.js';
import { pixelDataStructure, probeVideo, readAttributes } from '../helpers/dicom-tools.js';
import { makeTempDir, run, sampleInput, validateWithDciodvfy } from './fixtures/dicom.js';

const { dir, remove } = await makeTempDir('video-endoscopic');
t.teardown(remove);

// 20 frames of 320x240 at 25 fps, High Profile level 4.1, in MPEG-TS: made by the ffmpeg CLI.
const tsFile = path.join(dir, 'clip.ts');
await run('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25', '-frames:v', '20', '-c:v', 'libx264', '-profile:v', 'high', '-level', '4.1', '-pix_fmt', 'yuv420p', '-f', 'mpegts', tsFile]);
const stream = await readFile(tsFile);

function videoInput(overrides: Partial<VideoEndoscopicInput> = {}): VideoEndoscopicInput {
  const { jpeg: _jpeg, ...common } = sampleInput(Buffer.alloc(0), 320, 240);
  return {
    ...common,
    stream,
    transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_41,
    numberOfFrames: 20,
    frameRate: 25,
    anatomicRegion: { codeValue: '71854001', codingSchemeDesignator: 'SCT', codeMeaning: 'Colon', paired: false },
    ...overrides,
  };
}

let counter = 0;
async function writeObject(input: VideoEndoscopicInput): Promise<string> {
  counter += 1;
  const file = path.join(dir, `video-${counter}.dcm`);
  await writeFile(file, buildVideoEndoscopicImage(input));
  return file;
}

t.test('video object passes dciodvfy', async (t) => {
  const file = await writeObject(videoInput());
  const { errors, warnings } = await validateWithDciodvfy(file);
  for (const warning of warnings) t.comment(`dciodvfy: ${warning}`);
  t.same(errors, [], 'dciodvfy reports no errors');
});

t.test('video object has one fragment after an empty offset table', async (t) => {
  const file = await writeObject(videoInput());
  const extracted = path.join(dir, 'extracted.ts');
  const structure = await pixelDataStructure(file, extracted);
  t.equal(structure.transferSyntax, MPEG4_HIGH_PROFILE_LEVEL_41);
  t.equal(structure.offsetTableLength, 0, 'empty Basic Offset Table');
  t.same(structure.fragments, [stream.length], 'the whole stream in one fragment');
  t.ok((await readFile(extracted)).equals(stream), 'fragment bytes equal the stream');
  const probed = await probeVideo(extracted);
  t.equal(probed.frames, 20, 'the fragment decodes to every frame');
  t.equal(probed.profile, 'High');
});

t.test('video object attributes', async (t) => {
  const file = await writeObject(videoInput({ burnedInAnnotation: 'NO' }));
  const attributes = await readAttributes(file, [
    'SOPClassUID',
    'NumberOfFrames',
    'FrameTime',
    'FrameIncrementPointer',
    'CineRate',
    'PhotometricInterpretation',
    'SamplesPerPixel',
    'PlanarConfiguration',
    'BitsAllocated',
    'BurnedInAnnotation',
    'LossyImageCompression',
    'LossyImageCompressionMethod',
    'Rows',
    'Columns',
    'Modality',
  ]);
  t.same(attributes, {
    SOPClassUID: VIDEO_ENDOSCOPIC_IMAGE_STORAGE,
    NumberOfFrames: '20',
    FrameTime: '40',
    FrameIncrementPointer: '(0018, 1063)',
    CineRate: '25',
    PhotometricInterpretation: 'YBR_PARTIAL_420',
    SamplesPerPixel: '3',
    PlanarConfiguration: '0',
    BitsAllocated: '8',
    BurnedInAnnotation: 'NO',
    LossyImageCompression: '01',
    LossyImageCompressionMethod: 'ISO_14496_10',
    Rows: '240',
    Columns: '320',
    Modality: 'ES',
  });
  const meta = readObjectMetadata(await readFile(file));
  t.equal(meta.transferSyntaxUid, MPEG4_HIGH_PROFILE_LEVEL_41);
  t.equal(meta.sopClassUid, VIDEO_ENDOSCOPIC_IMAGE_STORAGE);
});

t.test('burned-in annotation defaults to YES', async (t) => {
  const file = await writeObject(videoInput());
  t.equal((await readAttributes(file, ['BurnedInAnnotation'])).BurnedInAnnotation, 'YES');
});

t.test('odd-length stream is padded to even', async (t) => {
  const odd = Buffer.concat([stream, Buffer.from([0x47])]);
  const file = await writeObject(videoInput({ stream: odd }));
  const structure = await pixelDataStructure(file);
  t.same(structure.fragments, [odd.length + 1]);
  t.equal((await stat(file)).size % 2, 0, 'file length is even');
});

const invalid: Array<[string, Partial<VideoEndoscopicInput>, RegExp]> = [
  ['JPEG transfer syntax', { transferSyntaxUid: '1.2.840.10008.1.2.4.50' }, /invalid transfer syntax 1\.2\.840\.10008\.1\.2\.4\.50: expected an MPEG-4 AVC\/H\.264 transfer syntax/],
  ['no frames', { numberOfFrames: 0 }, /invalid NumberOfFrames 0: expected at least 1/],
  ['no frame rate', { frameRate: 0 }, /invalid frame rate 0: expected a positive number/],
  ['empty stream', { stream: Buffer.alloc(0) }, /invalid pixel data: the video stream is empty/],
  ['bad UID', { sopInstanceUid: '1.2.x' }, /invalid SOPInstanceUID/],
];

for (const [name, overrides, message] of invalid) {
  t.test(`video object rejects ${name}`, async (t) => {
    t.throws(() => buildVideoEndoscopicImage(videoInput(overrides)), message);
  });
}
