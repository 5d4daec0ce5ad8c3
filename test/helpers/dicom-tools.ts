import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Debian's python3, which has pydicom; the python3 on PATH may be another installation. */
export const PYTHON = '/usr/bin/python3';

/** Runs dciodvfy (dicom3tools) and returns its Error and Warning lines. */
export async function validateIod(file: string): Promise<{ errors: string[]; warnings: string[] }> {
  // dciodvfy exits non-zero when it finds errors; its report is what matters.
  const result = await run('dciodvfy', [file], { maxBuffer: 16 * 1024 * 1024 }).catch((error: { stdout?: string; stderr?: string }) => ({
    stdout: error.stdout ?? '',
    stderr: error.stderr ?? '',
  }));
  const lines = `${result.stdout}\n${result.stderr}`.split('\n');
  return {
    errors: lines.filter((line) => line.startsWith('Error')),
    warnings: lines.filter((line) => line.startsWith('Warning')),
  };
}

export interface RegionLevels {
  min: number;
  max: number;
  mean: number;
}

/** Decodes a DICOM image with pydicom and returns the levels of each region [x0, y0, x1, y1]. */
export async function pixelLevels(file: string, regions: Array<[number, number, number, number]>): Promise<{ photometric: string; shape: number[]; regions: RegionLevels[] }> {
  const script = new URL('./pixel_levels.py', import.meta.url).pathname;
  const { stdout } = await run(PYTHON, [script, file, ...regions.map((region) => region.join(','))]);
  return JSON.parse(stdout) as { photometric: string; shape: number[]; regions: RegionLevels[] };
}

/** Reads top-level attributes of a DICOM file with pydicom, as strings. */
export async function readAttributes(file: string, keywords: string[]): Promise<Record<string, string>> {
  const script = ['import json, sys, pydicom', 'ds = pydicom.dcmread(sys.argv[1])', 'print(json.dumps({k: str(ds.get(k, "")) for k in sys.argv[2:]}))'].join('\n');
  const { stdout } = await run(PYTHON, ['-c', script, file, ...keywords]);
  return JSON.parse(stdout) as Record<string, string>;
}
