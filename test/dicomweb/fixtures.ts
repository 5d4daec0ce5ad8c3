import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { buildVideoEndoscopicImage, VIDEO_ENDOSCOPIC_IMAGE_STORAGE } from '../../src/dicom/video-endoscopic.js';
import { MPEG4_HIGH_PROFILE_LEVEL_41 } from '../../src/dicom/video-transfer-syntax.js';
import { buildVlEndoscopicImage, JPEG_BASELINE_TRANSFER_SYNTAX, VL_ENDOSCOPIC_IMAGE_STORAGE } from '../../src/dicom/vl-endoscopic.js';
import { createLogger, type Logger } from '../../src/log.js';
import type { StowRsDestinationConfig } from '../../src/profile/schema.js';
import type { ObjectMetadata } from '../../src/spool/types.js';
import { runFfmpeg } from '../video/helpers.js';

export const UID_ROOT = '1.2.826.0.1.3680043.10.999.8';

/** Patient data planted in every object. It must never show up in a log line or a reason. */
export const patientMarkers = ['STOWMARKER^SECRET', 'STOWPID4711'];

export interface TestObject {
  part10: Buffer;
  meta: ObjectMetadata;
  studyInstanceUid: string;
  seriesInstanceUid: string;
}

const station = {
  aeTitle: 'ENDOCAP',
  stationName: 'ROOM1',
  institutionName: '',
  departmentName: '',
  uidRoot: UID_ROOT,
  deviceSerialNumber: 'BOX1',
  softwareVersion: '0.1.0',
};

function study(studyInstanceUid: string, at: Date): Parameters<typeof buildVlEndoscopicImage>[0]['study'] {
  return { studyInstanceUid, studyId: 'S1', accessionNumber: '', studyDate: at, patientName: patientMarkers[0] ?? '', patientId: patientMarkers[1] ?? '' };
}

/** Builds a VL Endoscopic Image with a real JPEG made by the ffmpeg CLI. */
export async function stillObject(directory: string, index: number, options: { width?: number; height?: number; noise?: boolean } = {}): Promise<TestObject> {
  const width = options.width ?? 320;
  const height = options.height ?? 240;
  await mkdir(directory, { recursive: true });
  const jpegPath = join(directory, `still-${index}.jpg`);
  const source = options.noise ? `nullsrc=size=${width}x${height},geq=random(1)*255:128:128` : `testsrc2=size=${width}x${height}`;
  await runFfmpeg(['-f', 'lavfi', '-i', source, '-frames:v', '1', '-q:v', '2', '-pix_fmt', 'yuvj422p', jpegPath]);
  const at = new Date();
  const studyInstanceUid = `${UID_ROOT}.1`;
  const seriesInstanceUid = `${UID_ROOT}.1.1`;
  const sopInstanceUid = `${UID_ROOT}.1.1.${index}`;
  const part10 = buildVlEndoscopicImage({
    jpeg: await readFile(jpegPath),
    width,
    height,
    acquiredAt: at,
    sopInstanceUid,
    station,
    study: study(studyInstanceUid, at),
    series: { seriesInstanceUid, seriesNumber: 1, seriesDate: at },
    instanceNumber: index,
  });
  return {
    part10,
    meta: { sopClassUid: VL_ENDOSCOPIC_IMAGE_STORAGE, sopInstanceUid, transferSyntaxUid: JPEG_BASELINE_TRANSFER_SYNTAX },
    studyInstanceUid,
    seriesInstanceUid,
  };
}

/** Builds a Video Endoscopic Image with H.264 High Profile made by the ffmpeg CLI; `frames` sets its size. */
export async function clipObject(directory: string, index: number, frames = 25): Promise<TestObject> {
  await mkdir(directory, { recursive: true });
  const ts = join(directory, `clip-${index}.ts`);
  await runFfmpeg(['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=25', '-frames:v', String(frames), '-c:v', 'libx264', '-profile:v', 'high', '-pix_fmt', 'yuv420p', '-f', 'mpegts', ts]);
  const at = new Date();
  const studyInstanceUid = `${UID_ROOT}.1`;
  const seriesInstanceUid = `${UID_ROOT}.1.2`;
  const sopInstanceUid = `${UID_ROOT}.1.2.${index}`;
  const part10 = buildVideoEndoscopicImage({
    stream: await readFile(ts),
    transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_41,
    numberOfFrames: frames,
    frameRate: 25,
    width: 320,
    height: 240,
    acquiredAt: at,
    sopInstanceUid,
    station,
    study: study(studyInstanceUid, at),
    series: { seriesInstanceUid, seriesNumber: 2, seriesDate: at },
    instanceNumber: index,
    anatomicRegion: { codeValue: '71854001', codingSchemeDesignator: 'SCT', codeMeaning: 'Colon', paired: false },
  });
  return {
    part10,
    meta: { sopClassUid: VIDEO_ENDOSCOPIC_IMAGE_STORAGE, sopInstanceUid, transferSyntaxUid: MPEG4_HIGH_PROFILE_LEVEL_41 },
    studyInstanceUid,
    seriesInstanceUid,
  };
}

export function stowDestination(url: string, overrides: Partial<StowRsDestinationConfig> = {}): StowRsDestinationConfig {
  return {
    kind: 'stow-rs',
    name: 'web',
    url,
    connectTimeoutMs: 2_000,
    requestTimeoutMs: 5_000,
    retry: { initialMs: 100, maxMs: 1_000, multiplier: 2 },
    objectsPerRequest: 10,
    ...overrides,
  };
}

/** Creates a pino logger that keeps every line in memory. */
export function memoryLogger(): { log: Logger; lines: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8');
  });
  return { log: createLogger('debug', stream), lines: () => text };
}
