import type { VideoSourceConfig } from '../profile/schema.js';
import { simulatorGraph } from './simulator.js';

/** Arguments for FFmpeg's avformat_open_input. */
export interface InputSpec {
  url: string;
  /** Input format name; FFmpeg guesses it when undefined. */
  format: string | undefined;
  /** Demuxer and protocol options; every value is a string, as FFmpeg takes them. */
  options: Record<string, string>;
}

export interface InputSpecContext {
  /** Font for the simulator's text panel; null draws none. */
  fontFile: string | null;
  /** Network reads that stall longer than this fail, in milliseconds. */
  ioTimeoutMs: number;
}

/** Simulator size and rate when the profile leaves them out. */
export const SIMULATOR_DEFAULTS = { width: 1280, height: 720, frameRate: 30 } as const;

/**
 * Turns a profile's video source into an FFmpeg input. Options from the
 * profile come last, so they override every default set here.
 */
export function inputSpec(source: VideoSourceConfig, context: InputSpecContext): InputSpec {
  switch (source.kind) {
    case 'v4l2':
      return { url: source.url || '/dev/video0', format: source.format ?? 'v4l2', options: { ...v4l2Options(source), ...source.options } };
    case 'file':
      return { url: source.url, format: source.format, options: { ...source.options } };
    case 'network':
      return { url: source.url, format: source.format, options: { ...networkOptions(source.url, context.ioTimeoutMs), ...source.options } };
    case 'lavfi':
      return { url: source.url, format: 'lavfi', options: { ...source.options } };
    case 'simulator': {
      const graph = simulatorGraph({
        width: source.width ?? SIMULATOR_DEFAULTS.width,
        height: source.height ?? SIMULATOR_DEFAULTS.height,
        frameRate: source.frameRate ?? SIMULATOR_DEFAULTS.frameRate,
        fontFile: context.fontFile,
      });
      return { url: graph, format: 'lavfi', options: { ...source.options } };
    }
  }
}

/**
 * Describes a source for logs: kind and location, without credentials or
 * query strings (SRT passphrases, stream keys) and without lavfi graphs.
 */
export function describeSource(source: VideoSourceConfig): { kind: string; url?: string } {
  switch (source.kind) {
    case 'lavfi':
    case 'simulator':
      return { kind: source.kind };
    case 'network':
      return { kind: source.kind, url: redactUrl(source.url) };
    default:
      return { kind: source.kind, url: source.url };
  }
}

function v4l2Options(source: VideoSourceConfig): Record<string, string> {
  const options: Record<string, string> = {};
  if (source.width !== undefined && source.height !== undefined) options.video_size = `${source.width}x${source.height}`;
  if (source.frameRate !== undefined) options.framerate = String(source.frameRate);
  if (source.inputFormat !== undefined) options.input_format = source.inputFormat;
  return options;
}

/**
 * Timeouts so that a dead peer fails the open or read instead of blocking a
 * libuv thread forever. FFmpeg takes them in microseconds. `rw_timeout`
 * covers TCP-based protocols. The udp protocol ignores it and honours only its
 * own `timeout` (checked with node-av 6.1.1: a quiet UDP read with only
 * `rw_timeout` set blocked indefinitely, and interrupt() did not end it).
 * `timeout` is also the socket I/O timeout of rtsp and srt.
 */
function networkOptions(url: string, ioTimeoutMs: number): Record<string, string> {
  const microseconds = String(Math.round(ioTimeoutMs * 1000));
  const options: Record<string, string> = { rw_timeout: microseconds };
  const scheme = url.slice(0, url.indexOf(':')).toLowerCase();
  if (scheme === 'rtsp' || scheme === 'rtsps' || scheme === 'srt' || scheme === 'udp') options.timeout = microseconds;
  // A burst larger than the receive FIFO drops packets instead of ending the stream.
  if (scheme === 'udp') options.overrun_nonfatal = '1';
  return options;
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return '(unparsable url)';
  }
}
