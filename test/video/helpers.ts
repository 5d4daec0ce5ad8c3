import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import type { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { videoSchema, type VideoConfig } from '../../src/profile/schema.js';
import type { Logger } from '../../src/log.js';

/** Stills and a blocked UDP read each hold a libuv thread, so the default pool of 4 is tight. */
process.env.UV_THREADPOOL_SIZE ??= '8';

export const silentLog: Logger = pino({ level: 'silent' });

/** Creates a debug logger that keeps each entry's message, for tests that wait for a log line. */
export function capturingLog(): { log: Logger; messages: string[] } {
  const messages: string[] = [];
  const destination = {
    write(line: string): void {
      const entry = JSON.parse(line) as { msg?: string };
      if (entry.msg !== undefined) messages.push(entry.msg);
    },
  };
  return { log: pino({ level: 'debug' }, destination), messages };
}

/** Builds a video config the way a profile would, defaults included. */
export function videoConfig(input: unknown): VideoConfig {
  return videoSchema.parse(input);
}

/** Resolves with the event's first argument, or rejects after `timeoutMs`. */
export async function nextEvent<T>(emitter: EventEmitter, event: string, timeoutMs: number): Promise<T> {
  const [value] = (await once(emitter, event, { signal: AbortSignal.timeout(timeoutMs) })) as [T];
  return value;
}

/** Polls `condition` every 20 ms until it holds, or rejects after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs the ffmpeg CLI to completion, and rejects with its stderr when it fails. */
export async function runFfmpeg(args: string[]): Promise<void> {
  const child = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`ffmpeg exited with ${code}: ${stderr}`);
}

/** Starts an ffmpeg CLI process that keeps running until killed. */
export function startFfmpeg(args: string[]): ChildProcess {
  return spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args], { stdio: 'ignore' });
}

/** Kills a child process and waits for it to exit. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/** Returns a UDP port on 127.0.0.1 that was free a moment ago. */
export async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

export interface RgbImage {
  width: number;
  height: number;
  /** Packed RGB, 3 bytes per pixel, rows top to bottom. */
  pixels: Buffer;
}

/** Decodes a JPEG with libjpeg-turbo's djpeg, independently of FFmpeg. */
export async function decodeJpeg(jpeg: Buffer): Promise<RgbImage> {
  const child = spawn('djpeg', ['-pnm'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stdin.end(jpeg);
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`djpeg exited with ${code}`);
  return parsePpm(Buffer.concat(chunks));
}

/** Parses a binary PPM (P6, maxval 255) as djpeg writes it. */
function parsePpm(data: Buffer): RgbImage {
  const fields: string[] = [];
  let offset = 0;
  while (fields.length < 4) {
    while (/\s/.test(String.fromCharCode(data[offset] ?? 0))) offset += 1;
    let field = '';
    while (offset < data.length && !/\s/.test(String.fromCharCode(data[offset] ?? 0))) {
      field += String.fromCharCode(data[offset] ?? 0);
      offset += 1;
    }
    fields.push(field);
  }
  offset += 1;
  const [magic, width, height, maxval] = fields;
  if (magic !== 'P6' || maxval !== '255') throw new Error(`expected an 8-bit P6 image, got ${magic} with maxval ${maxval}`);
  return { width: Number(width), height: Number(height), pixels: data.subarray(offset) };
}

/** Minimum and maximum of every channel inside a rectangle. */
export function channelRange(image: RgbImage, x0: number, y0: number, x1: number, y1: number): { min: number; max: number } {
  let min = 255;
  let max = 0;
  for (let y = y0; y < y1; y += 1) {
    for (let x = x0; x < x1; x += 1) {
      for (let channel = 0; channel < 3; channel += 1) {
        const value = image.pixels[(y * image.width + x) * 3 + channel] ?? 0;
        if (value < min) min = value;
        if (value > max) max = value;
      }
    }
  }
  return { min, max };
}

export interface JpegFrameHeader {
  /** Start-of-frame marker: 0xc0 is baseline DCT. */
  marker: number;
  width: number;
  height: number;
  /** Horizontal and vertical sampling factors per component, in component order. */
  sampling: { h: number; v: number }[];
}

/** Reads the start-of-frame segment of a JPEG. */
export function jpegFrameHeader(jpeg: Buffer): JpegFrameHeader {
  let offset = 2;
  while (offset + 4 <= jpeg.length) {
    if (jpeg[offset] !== 0xff) throw new Error(`expected a JPEG marker at byte ${offset}`);
    const marker = jpeg[offset + 1] ?? 0;
    const length = jpeg.readUInt16BE(offset + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      const height = jpeg.readUInt16BE(offset + 5);
      const width = jpeg.readUInt16BE(offset + 7);
      const components = jpeg[offset + 9] ?? 0;
      const sampling = [];
      for (let index = 0; index < components; index += 1) {
        const factors = jpeg[offset + 11 + index * 3] ?? 0;
        sampling.push({ h: factors >> 4, v: factors & 0x0f });
      }
      return { marker, width, height, sampling };
    }
    offset += 2 + length;
  }
  throw new Error('JPEG has no start-of-frame segment');
}
