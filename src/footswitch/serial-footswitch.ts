import { EventEmitter } from 'node:events';
import { realpath, stat } from 'node:fs/promises';
import { SerialPortStream } from '@serialport/stream';
import { SerialPort } from 'serialport';
import { EndocapError, ErrorCodes, errorMessage, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { SerialFootswitchConfig } from '../profile/schema.js';
import { BytePedalDecoder, LinePedalDecoder, type LevelListener } from './decoders.js';
import type { FootswitchEvents } from './events.js';
import { GestureRecognizer, type GestureCounters } from './gestures.js';
import { LogThrottle } from './log-throttle.js';
import { ModemPoller } from './modem-poller.js';

/** How often an open port's path is checked; a removed device is noticed within this time plus one stat. */
const PATH_CHECK_INTERVAL_MS = 500;
/** Consecutive failed modem-line reads that count as a lost device rather than a glitch. */
const MODEM_FAILURES_BEFORE_DISCONNECT = 3;
const CLOSE_TIMEOUT_MS = 2_000;
const REPEAT_LOG_INTERVAL_MS = 10_000;

// Named through @serialport/stream because @serialport/bindings-interface ships no
// types for ESM importers.
export type SerialBinding = SerialPortStream['settings']['binding'];
type ModemProtocol = Extract<SerialFootswitchConfig['protocol'], { kind: 'modem' }>;

export interface SerialFootswitchOptions {
  config: SerialFootswitchConfig;
  log: Logger;
  /** serialport binding; defaults to the platform one. Tests pass `@serialport/binding-mock`. */
  binding?: SerialBinding;
  /** Clock in Unix epoch ms for event times; defaults to Date.now, the clock other components stamp frames with. */
  clock?: () => number;
}

export interface SerialFootswitchCounters extends GestureCounters {
  connects: number;
  disconnects: number;
  openFailures: number;
  /** Bytes that are not in the byte protocol's map. */
  ignoredBytes: number;
  /** Complete lines matching neither `down` nor `up`. */
  unknownLines: number;
  /** Lines dropped for exceeding `maxLineLength`. */
  overlongLines: number;
  /** Modem polls skipped because the previous read had not finished. */
  skippedPolls: number;
  modemReadFailures: number;
}

export interface SerialFootswitchStatus {
  connected: boolean;
  /** The configured path. */
  path: string;
  /** Target of the configured path's symlinks when last opened, for logs only. */
  resolvedPath?: string;
  /** `CODE: message` of the last failure; cleared when the port opens. */
  lastError?: string;
  lastErrorCode?: ErrorCode;
  counters: SerialFootswitchCounters;
}

/** State of one open port; replaced as a whole on every reopen. */
interface Connection {
  port: SerialPortStream;
  deviceId: string | undefined;
  pathTimer: NodeJS.Timeout | undefined;
  pathCheckInFlight: boolean;
  modemPoller: ModemPoller | undefined;
}

/**
 * Pedal on a serial port, wired as bytes, text lines or a modem-status line.
 *
 * `start()` never fails for a missing or busy port. It reports the error in
 * `status()` and retries every `reopenIntervalMs`. The interval is fixed
 * rather than a backoff because opening a local device is cheap and a
 * replugged pedal must work again within seconds.
 *
 * A lost device is noticed from the port closing, from failed modem reads, or
 * from the path disappearing or pointing to another device. On loss a held
 * pedal counts as released without an action (see `GestureRecognizer.reset`).
 * Event times of byte and line pedals are the arrival time of the chunk that
 * carried them, so they include the adapter's and the kernel's buffering.
 */
export class SerialFootswitch extends EventEmitter<FootswitchEvents> {
  private readonly config: SerialFootswitchConfig;
  private readonly log: Logger;
  private readonly binding: SerialBinding;
  private readonly clock: () => number;
  private readonly recognizer: GestureRecognizer;
  private readonly byteDecoder: BytePedalDecoder | undefined;
  private readonly lineDecoder: LinePedalDecoder | undefined;
  private readonly counters: Omit<SerialFootswitchCounters, keyof GestureCounters>;
  private readonly ignoredBytesLog: LogThrottle;
  private readonly badLinesLog: LogThrottle;
  private readonly openFailureLog: LogThrottle;
  private readonly modemFailureLog: LogThrottle;

  private running = false;
  private connection: Connection | undefined;
  private opening: Promise<void> | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private resolvedPath: string | undefined;
  private lastError: EndocapError | undefined;

  constructor(options: SerialFootswitchOptions) {
    super();
    this.config = options.config;
    this.log = options.log.child({ component: 'footswitch', path: options.config.path });
    this.binding = options.binding ?? SerialPort.binding;
    this.clock = options.clock ?? Date.now;

    this.recognizer = new GestureRecognizer({
      debounceMs: this.config.debounceMs,
      longPressMs: this.config.longPressMs,
      doublePressMs: this.config.doublePressMs,
      gestures: this.config.gestures,
      clock: this.clock,
      leadingEdge: this.config.protocol.kind !== 'modem',
      onPedalChanged: (change) => this.emit('pedalChanged', change),
      onGesture: (gesture) => {
        this.log.info({ gesture: gesture.gesture, action: gesture.action }, 'pedal gesture recognized');
        this.emit('gesture', gesture);
      },
    });

    const { protocol } = this.config;
    this.byteDecoder = protocol.kind === 'bytes' ? new BytePedalDecoder(protocol) : undefined;
    this.lineDecoder = protocol.kind === 'lines' ? new LinePedalDecoder(protocol) : undefined;

    this.counters = {
      connects: 0,
      disconnects: 0,
      openFailures: 0,
      ignoredBytes: 0,
      unknownLines: 0,
      overlongLines: 0,
      skippedPolls: 0,
      modemReadFailures: 0,
    };
    this.ignoredBytesLog = new LogThrottle(REPEAT_LOG_INTERVAL_MS, this.clock);
    this.badLinesLog = new LogThrottle(REPEAT_LOG_INTERVAL_MS, this.clock);
    this.openFailureLog = new LogThrottle(REPEAT_LOG_INTERVAL_MS * 6, this.clock);
    this.modemFailureLog = new LogThrottle(REPEAT_LOG_INTERVAL_MS, this.clock);
  }

  /** Opens the port once, then keeps retrying in the background if that failed. Never rejects. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.log.info({ protocol: this.config.protocol.kind, baudRate: this.config.baudRate }, 'footswitch starting');
    await this.openOnce();
    this.scheduleReopen();
  }

  /** Stops retrying and closes the port; a held pedal counts as released without an action. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = undefined;
    await this.opening;
    const connection = this.connection;
    if (connection !== undefined) {
      this.detach(connection, 'stopped', true);
      await this.closePort(connection.port);
    }
    this.log.info({}, 'footswitch stopped');
  }

  status(): SerialFootswitchStatus {
    const status: SerialFootswitchStatus = {
      connected: this.connection !== undefined,
      path: this.config.path,
      counters: { ...this.counters, ...this.recognizer.counters },
    };
    if (this.resolvedPath !== undefined) status.resolvedPath = this.resolvedPath;
    if (this.lastError !== undefined) {
      status.lastError = `${this.lastError.code}: ${this.lastError.message}`;
      status.lastErrorCode = this.lastError.code;
    }
    return status;
  }

  private scheduleReopen(): void {
    if (!this.running || this.connection !== undefined || this.reopenTimer !== undefined) return;
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      void this.openOnce().then(() => this.scheduleReopen());
    }, this.config.reopenIntervalMs);
  }

  private openOnce(): Promise<void> {
    this.opening ??= this.open().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async open(): Promise<void> {
    const { path, baudRate } = this.config;
    let port: SerialPortStream;
    try {
      port = new SerialPortStream({ binding: this.binding, path, baudRate, lock: true, autoOpen: false });
      await new Promise<void>((resolve, reject) => port.open((error) => (error ? reject(error) : resolve())));
    } catch (error) {
      this.recordOpenFailure(error);
      return;
    }

    // The stream reads only once a 'data' listener exists, so no data or read error is missed during these awaits.
    const deviceId = await this.readDeviceId();
    this.resolvedPath = await this.resolvePath();
    if (!this.running) {
      await this.closePort(port);
      return;
    }

    const connection: Connection = {
      port,
      deviceId,
      pathTimer: undefined,
      pathCheckInFlight: false,
      modemPoller: undefined,
    };
    this.connection = connection;
    this.lastError = undefined;
    this.counters.connects += 1;
    port.on('data', (chunk: Buffer) => this.onData(connection, chunk));
    port.on('error', (error: Error) => this.onPortLost(connection, `port error: ${errorMessage(error)}`));
    port.on('close', (error: Error | null) => this.onPortLost(connection, error ? errorMessage(error) : 'port closed'));
    connection.pathTimer = setInterval(() => void this.checkPath(connection), PATH_CHECK_INTERVAL_MS);
    if (this.config.protocol.kind === 'modem') {
      connection.modemPoller = this.createModemPoller(connection, this.config.protocol);
      connection.modemPoller.start();
    }
    this.log.info({ resolvedPath: this.resolvedPath }, 'footswitch connected');
    this.emit('connected', { path });
  }

  private recordOpenFailure(error: unknown): void {
    const message = errorMessage(error);
    // The Linux binding reports a held flock as "Cannot lock port", TIOCEXCL gives EBUSY, and the mock binding uses "locked".
    const busy = /cannot lock|locked|EBUSY|resource busy/i.test(message);
    const code = busy ? ErrorCodes.SERIAL_PORT_BUSY : ErrorCodes.SERIAL_OPEN_FAILED;
    const previous = this.lastError;
    this.lastError = new EndocapError(code, `cannot open serial port ${this.config.path}: ${message}`, { cause: error, retryable: true });
    this.counters.openFailures += 1;

    const changed = previous?.message !== this.lastError.message;
    const repeats = changed ? undefined : this.openFailureLog.add();
    if (changed || repeats !== undefined) {
      this.log.warn({ code, err: message, failures: this.counters.openFailures, retryInMs: this.config.reopenIntervalMs }, 'footswitch open failed, retrying');
    }
  }

  private onData(connection: Connection, chunk: Buffer): void {
    if (this.connection !== connection) return;
    const at = this.clock();
    const onLevel: LevelListener = (down) => this.recognizer.input(down, at);
    if (this.byteDecoder !== undefined) {
      const ignored = this.byteDecoder.decode(chunk, onLevel);
      if (ignored === 0) return;
      this.counters.ignoredBytes += ignored;
      const since = this.ignoredBytesLog.add(ignored);
      if (since !== undefined) this.log.debug({ ignoredBytes: since, total: this.counters.ignoredBytes }, 'footswitch ignored bytes not in the protocol map');
      return;
    }
    if (this.lineDecoder !== undefined) {
      const { unknownLines, overlongLines } = this.lineDecoder.decode(chunk, onLevel);
      if (unknownLines + overlongLines === 0) return;
      this.counters.unknownLines += unknownLines;
      this.counters.overlongLines += overlongLines;
      const since = this.badLinesLog.add(unknownLines + overlongLines);
      if (since !== undefined) {
        this.log.warn(
          { badLines: since, unknownLines: this.counters.unknownLines, overlongLines: this.counters.overlongLines, maxLineLength: this.lineDecoder.maxLineLength },
          'footswitch dropped unknown or overlong lines',
        );
      }
    }
    // Data on a modem-wired port is line noise and means nothing.
  }

  private createModemPoller(connection: Connection, protocol: ModemProtocol): ModemPoller {
    return new ModemPoller({
      read: (callback) => connection.port.get(callback),
      protocol,
      onLevel: (down) => this.recognizer.input(down),
      onPollSkipped: () => {
        this.counters.skippedPolls += 1;
      },
      onHeldAtStart: () => this.log.info({}, 'footswitch pedal held at connect, waiting for release'),
      onReadFailed: (reason, failuresInRow) => this.onModemReadFailed(connection, reason, failuresInRow),
    });
  }

  private onModemReadFailed(connection: Connection, reason: string, failuresInRow: number): void {
    this.counters.modemReadFailures += 1;
    this.lastError = new EndocapError(ErrorCodes.SERIAL_MODEM_READ_FAILED, `cannot read modem line of ${this.config.path}: ${reason}`, { retryable: true });
    const since = this.modemFailureLog.add();
    if (since !== undefined) this.log.warn({ err: reason, failures: since }, 'footswitch modem line read failed');
    if (failuresInRow >= MODEM_FAILURES_BEFORE_DISCONNECT) {
      this.onPortLost(connection, `modem line read failed ${failuresInRow} times: ${reason}`, ErrorCodes.SERIAL_MODEM_READ_FAILED);
    }
  }

  private async checkPath(connection: Connection): Promise<void> {
    if (connection.pathCheckInFlight) return;
    connection.pathCheckInFlight = true;
    let reason: string | undefined;
    try {
      const info = await stat(this.config.path);
      const deviceId = `${info.dev}:${info.ino}:${info.rdev}`;
      if (connection.deviceId !== undefined && deviceId !== connection.deviceId) reason = 'device path now points to another device';
    } catch (error) {
      reason = `device path is gone: ${errorMessage(error)}`;
    } finally {
      connection.pathCheckInFlight = false;
    }
    if (reason !== undefined) this.onPortLost(connection, reason);
  }

  private onPortLost(connection: Connection, reason: string, code: ErrorCode = ErrorCodes.SERIAL_DISCONNECTED): void {
    if (this.connection !== connection) return;
    this.lastError = new EndocapError(code, `serial port ${this.config.path} lost: ${reason}`, { retryable: true });
    this.detach(connection, reason, false);
    void this.closePort(connection.port);
    this.scheduleReopen();
  }

  /** Forgets the connection, releases a held pedal without an action and emits `disconnected`. */
  private detach(connection: Connection, reason: string, stopping: boolean): void {
    clearInterval(connection.pathTimer);
    connection.modemPoller?.stop();
    this.connection = undefined;
    this.recognizer.reset();
    this.lineDecoder?.reset();
    this.counters.disconnects += 1;
    if (stopping) this.log.info({}, 'footswitch port closed');
    else this.log.warn({ reason }, 'footswitch disconnected');
    this.emit('disconnected', { path: this.config.path, reason });
  }

  private async closePort(port: SerialPortStream): Promise<void> {
    if (!port.isOpen) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ timeoutMs: CLOSE_TIMEOUT_MS }, 'footswitch port close timed out');
        resolve();
      }, CLOSE_TIMEOUT_MS);
      port.close((error) => {
        clearTimeout(timer);
        // A port that vanished often fails to close cleanly; the descriptor is gone either way.
        if (error) this.log.debug({ err: errorMessage(error) }, 'footswitch port close failed');
        resolve();
      });
    });
  }

  /** Identity of the device behind the path, to notice a replug that reuses the path. */
  private async readDeviceId(): Promise<string | undefined> {
    try {
      const info = await stat(this.config.path);
      return `${info.dev}:${info.ino}:${info.rdev}`;
    } catch (error) {
      this.log.debug({ err: errorMessage(error) }, 'footswitch path stat failed after open');
      return undefined;
    }
  }

  private async resolvePath(): Promise<string | undefined> {
    try {
      return await realpath(this.config.path);
    } catch (error) {
      this.log.debug({ err: errorMessage(error) }, 'footswitch path could not be resolved');
      return undefined;
    }
  }
}
