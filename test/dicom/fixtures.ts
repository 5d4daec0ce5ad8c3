import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { VlEndoscopicInput } from '../../src/dicom/vl-endoscopic.js';

export const run = promisify(execFile);

/** Debian's interpreter, which has pydicom 2.3, numpy and Pillow (python3-pil). */
export const PYTHON = '/usr/bin/python3';

export const UID_ROOT = '1.2.826.0.1.3680043.10.999';

export async function makeTempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `endocap-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Encodes an RGB image as baseline JPEG with 4:2:2 chroma subsampling using
 * libjpeg-turbo's cjpeg. `pixel(x, y)` returns [r, g, b].
 */
export async function encodeBaselineJpeg(
  dir: string,
  width: number,
  height: number,
  pixel: (x: number, y: number) => [number, number, number],
  quality = 95,
): Promise<Buffer> {
  const header = Buffer.from(`P6\n${width} ${height}\n255\n`, 'latin1');
  const body = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      body.set(pixel(x, y), (y * width + x) * 3);
    }
  }
  const ppm = path.join(dir, `image-${width}x${height}.ppm`);
  const jpeg = path.join(dir, `image-${width}x${height}.jpg`);
  await writeFile(ppm, Buffer.concat([header, body]));
  await run('cjpeg', ['-quality', String(quality), '-sample', '2x1', '-baseline', '-outfile', jpeg, ppm]);
  return readFile(jpeg);
}

/** 64x48: black, except a white right half and a white bottom-left quarter block. Edges fall on 16-pixel boundaries. */
export function blackWhitePattern(x: number, y: number): [number, number, number] {
  const white = x >= 32 || y >= 32;
  return white ? [255, 255, 255] : [0, 0, 0];
}

export function sampleInput(jpeg: Buffer, width: number, height: number, overrides: Partial<VlEndoscopicInput> = {}): VlEndoscopicInput {
  const acquiredAt = new Date(2026, 11, 14, 10, 15, 30, 123);
  return {
    jpeg,
    width,
    height,
    acquiredAt,
    sopInstanceUid: `${UID_ROOT}.1.1.1`,
    station: {
      aeTitle: 'ENDO_TOWER_1',
      stationName: 'ENDO1',
      institutionName: 'General Hospital',
      departmentName: 'Endoscopy',
      uidRoot: UID_ROOT,
      deviceSerialNumber: 'BOX-0001',
      softwareVersion: '0.1.0',
    },
    study: {
      studyInstanceUid: `${UID_ROOT}.1.1`,
      studyId: 'ST1',
      accessionNumber: 'ACC0001',
      studyDate: new Date(2026, 11, 14, 10, 0, 0, 0),
      patientName: 'Doe^Jane',
      patientId: 'PID0001',
      patientBirthDate: '19700102',
      patientSex: 'F',
      referringPhysicianName: 'House^Gregory',
    },
    series: {
      seriesInstanceUid: `${UID_ROOT}.1.1.2`,
      seriesNumber: 1,
      seriesDate: new Date(2026, 11, 14, 10, 5, 0, 0),
    },
    instanceNumber: 1,
    ...overrides,
  };
}

/** Runs dciodvfy and returns its Error and Warning lines. dciodvfy exits non-zero on errors, so the exit code is ignored. */
export async function validateWithDciodvfy(file: string): Promise<{ errors: string[]; warnings: string[] }> {
  const output = await run('dciodvfy', [file]).then(
    ({ stdout, stderr }) => stdout + stderr,
    (error: { stdout?: string; stderr?: string }) => (error.stdout ?? '') + (error.stderr ?? ''),
  );
  const lines = output.split('\n');
  return {
    errors: lines.filter((line) => line.startsWith('Error')),
    warnings: lines.filter((line) => line.startsWith('Warning')),
  };
}

/** Runs a Python snippet with Debian's pydicom; `sys.argv[1]` is `file`. Returns its JSON output. */
export async function pydicom<T>(script: string, file: string): Promise<T> {
  const { stdout } = await run(PYTHON, ['-c', script, file], { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as T;
}
