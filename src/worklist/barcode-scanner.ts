import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import { SerialPortStream } from '@serialport/stream';
import { SerialPort } from 'serialport';
import { errorMessage } from '../errors.js';
import { LogThrottle } from '../footswitch/log-throttle.js';
import type { SerialBinding } from '../footswitch/serial-footswitch.js';
import type { Logger } from '../log.js';
import type { BarcodeConfig } from '../profile/schema.js';

/** Reason a line was not taken as a code; the line itself is never reported. */
export type RejectReason = 'too-short' | 'too-long' | 'control-characters' | 'not-utf8';

interface BarcodeScannerEvents {
  /** A code that passed the noise checks. Its value is patient data: never log it. */
  codeScanned: [{ value: string }];
  codeRejected: [{ reason: RejectReason }];
  connected: [];
  disconnected: [{ reason: string }];
}

export interface BarcodeScannerStatus {
  connected: boolean;
  path: string;
  lastError?: string;
  codes: number;
  rejected: number;
}

const CR = 0x0d;
const LF = 0x0a;
const PATH_CHECK_INTERVAL_MS = 1_000;
const CLOSE_TIMEOUT_MS = 2_000;
const REPEAT_LOG_INTERVAL_MS = 60_000;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Splits a byte stream into lines ended by CR, LF or CRLF, as the footswitch's
 * line protocol does. At most `maxLineLength` bytes of a line are kept. A
 * longer line is dropped up to its end, so a device that never ends a line
 * cannot grow memory.
 */
export class CodeLineDecoder {
  private parts: Buffer[] = [];
  private length = 0;
  private overlong = false;

  constructor(private readonly maxLineLength: number) {}

  /** Returns the complete lines of `chunk`, or 'too-long' for each line dropped. */
  decode(chunk: Uint8Array): Array<Buffer | 'too-long'> {
    const lines: Array<Buffer | 'too-long'> = [];
    let start = 0;
    for (let index = 0; index <= chunk.length; index += 1) {
      const end = index === chunk.length;
      const byte = chunk[index];
      if (!end && byte !== CR && byte !== LF) continue;
      this.append(chunk.subarray(start, index));
      start = index + 1;
      if (end) break;
      if (this.overlong) lines.push('too-long');
      else if (this.length > 0) lines.push(Buffer.concat(this.parts, this.length));
      this.reset();
    }
    return lines;
  }

  reset(): void {
    this.parts = [];
    this.length = 0;
    this.overlong = false;
  }

  private append(bytes: Uint8Array): void {
    if (this.overlong || bytes.length === 0) return;
    if (this.length + bytes.length > this.maxLineLength) {
      this.parts = [];
      this.length = 0;
      this.overlong = true;
      return;
    }
    // Copied because the stream may hand out slices of a shared read pool.
    this.parts.push(Buffer.from(bytes));
    this.length += bytes.length;
  }
}

/** Checks a scanned line; returns the code, trimmed, or why it is noise. */
export function checkCode(line: Buffer, minLength: number): { value: string } | { reason: RejectReason } {
  let text: string;
  try {
    text = utf8.decode(line).trim();
  } catch {
    return { reason: 'not-utf8' };
  }
  if (/[\u0000-\u001f\u007f]/.test(text)) return { reason: 'control-characters' };
  if (text.length < minLength) return { reason: 'too-short' };
  return { value: text };
}

/**
 * A barcode scanner on a serial port (USB scanners in serial mode, or a
 * USB-serial adapter) that sends one code per line. A missing port is opened
 * again every `reopenIntervalMs`; lines that look like noise are dropped and
 * counted.
 */
export class BarcodeScanner extends EventEmitter<BarcodeScannerEvents> {
  private readonly config: BarcodeConfig;
  private readonly log: Logger;
  private readonly binding: SerialBinding;
  private readonly decoder: CodeLineDecoder;
  private readonly openFailureLog = new LogThrottle(REPEAT_LOG_INTERVAL_MS, Date.now);
  private port: SerialPortStream | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private pathTimer: NodeJS.Timeout | undefined;
  private running = false;
  private lastError: string | undefined;
  private codes = 0;
  private rejected = 0;

  constructor(options: { config: BarcodeConfig; log: Logger; binding?: SerialBinding }) {
    super();
    this.config = options.config;
    this.log = options.log.child({ component: 'barcode', path: options.config.path });
    this.binding = options.binding ?? SerialPort.binding;
    this.decoder = new CodeLineDecoder(options.config.maxLineLength);
  }

  /** Opens the port, or keeps trying in the background; never rejects. */
  async start(): Promise<void> {
    this.running = true;
    await this.open();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.reopenTimer);
    const port = this.port;
    this.detach();
    if (port) await closePort(port);
  }

  status(): BarcodeScannerStatus {
    const status: BarcodeScannerStatus = { connected: this.port !== undefined, path: this.config.path, codes: this.codes, rejected: this.rejected };
    if (this.lastError !== undefined) status.lastError = this.lastError;
    return status;
  }

  private async open(): Promise<void> {
    if (!this.running || this.port) return;
    const port = new SerialPortStream({ binding: this.binding, path: this.config.path, baudRate: this.config.baudRate, lock: true, autoOpen: false });
    try {
      await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
    } catch (error) {
      this.lastError = `cannot open serial port ${this.config.path}: ${errorMessage(error)}`;
      const failures = this.openFailureLog.add();
      if (failures !== undefined) this.log.warn({ err: errorMessage(error), failures, retryInMs: this.config.reopenIntervalMs }, 'barcode scanner open failed, retrying');
      this.scheduleReopen();
      return;
    }
    if (!this.running) {
      await closePort(port);
      return;
    }
    this.port = port;
    this.lastError = undefined;
    this.decoder.reset();
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    port.on('error', (error: Error) => this.lost(port, `port error: ${errorMessage(error)}`));
    port.on('close', () => this.lost(port, 'port closed'));
    this.pathTimer = setInterval(() => {
      stat(this.config.path).catch(() => this.lost(port, 'device path is gone'));
    }, PATH_CHECK_INTERVAL_MS);
    this.log.info({}, 'barcode scanner connected');
    this.emit('connected');
  }

  private onData(chunk: Buffer): void {
    for (const line of this.decoder.decode(chunk)) {
      const checked = line === 'too-long' ? { reason: 'too-long' as const } : checkCode(line, this.config.minLength);
      if ('reason' in checked) {
        this.rejected += 1;
        this.log.warn({ reason: checked.reason, rejected: this.rejected }, 'barcode line ignored as noise');
        this.emit('codeRejected', { reason: checked.reason });
        continue;
      }
      this.codes += 1;
      this.log.info({ codes: this.codes }, 'barcode scanned');
      this.emit('codeScanned', checked);
    }
  }

  private lost(port: SerialPortStream, reason: string): void {
    if (this.port !== port) return;
    this.lastError = `serial port ${this.config.path} lost: ${reason}`;
    this.detach();
    void closePort(port);
    this.log.warn({ reason }, 'barcode scanner disconnected');
    this.emit('disconnected', { reason });
    this.scheduleReopen();
  }

  private detach(): void {
    clearInterval(this.pathTimer);
    this.port = undefined;
  }

  private scheduleReopen(): void {
    if (!this.running) return;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => void this.open(), this.config.reopenIntervalMs);
  }
}

async function closePort(port: SerialPortStream): Promise<void> {
  if (!port.isOpen) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
    port.close(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
