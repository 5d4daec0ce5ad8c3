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

export interface PixelDataStructure {
  transferSyntax: string;
  /** Length of the Basic Offset Table item in bytes; 0 when it is empty. */
  offsetTableLength: number;
  /** Length of each fragment in bytes, in order. */
  fragments: number[];
}

/**
 * Reads the encapsulated Pixel Data of a DICOM file with pydicom; with
 * `outputFile`, also writes the fragments joined together there.
 */
export async function pixelDataStructure(file: string, outputFile?: string): Promise<PixelDataStructure> {
  const script = new URL('./fragments.py', import.meta.url).pathname;
  const { stdout } = await run(PYTHON, [script, file, ...(outputFile === undefined ? [] : [outputFile])], { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as PixelDataStructure;
}

/** Decodes a video file with the ffprobe CLI and returns its codec facts and frame count. */
export async function probeVideo(file: string): Promise<{ codec: string; profile: string; level: number; width: number; height: number; frames: number }> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=codec_name,profile,level,width,height,nb_read_frames', '-of', 'json', file]);
  const stream = (JSON.parse(stdout) as { streams: Array<Record<string, string | number>> }).streams[0] ?? {};
  return {
    codec: String(stream.codec_name),
    profile: String(stream.profile),
    level: Number(stream.level),
    width: Number(stream.width),
    height: Number(stream.height),
    frames: Number(stream.nb_read_frames),
  };
}

/** Decodes one frame of a video file with the ffmpeg CLI and returns its luma plane, in the stream's own range. */
export async function decodedLuma(file: string, frameIndex = 0): Promise<{ width: number; height: number; luma: Buffer }> {
  const { width, height } = await probeVideo(file);
  const { stdout } = await run('ffmpeg', ['-v', 'error', '-i', file, '-vf', `select=eq(n\\,${frameIndex})`, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'gray', '-'], {
    encoding: 'buffer',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { width, height, luma: stdout };
}

/** Minimum and maximum of a luma plane inside a rectangle [x0, y0, x1, y1). */
export function lumaRange(image: { width: number; luma: Buffer }, x0: number, y0: number, x1: number, y1: number): { min: number; max: number } {
  let min = 255;
  let max = 0;
  for (let y = y0; y < y1; y += 1) {
    for (let x = x0; x < x1; x += 1) {
      const value = image.luma[y * image.width + x] ?? 0;
      min = Math.min(min, value);
      max = Math.max(max, value);
    }
  }
  return { min, max };
}
