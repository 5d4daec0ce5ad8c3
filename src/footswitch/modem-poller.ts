import type { ModemBitsCallback } from '@serialport/stream';
import { errorMessage } from '../errors.js';
import type { SerialFootswitchConfig } from '../profile/schema.js';

type ModemProtocol = Extract<SerialFootswitchConfig['protocol'], { kind: 'modem' }>;
export type ModemLine = ModemProtocol['line'];
type PortStatus = NonNullable<Parameters<ModemBitsCallback>[1]>;

export interface ModemPollerOptions {
  /** Reads the modem-status lines once, as `SerialPortStream.get` does. */
  read: (callback: ModemBitsCallback) => void;
  protocol: ModemProtocol;
  /** Receives the pedal level (after `activeLow`) of every successful read. */
  onLevel: (down: boolean) => void;
  /** Receives each failed read with the count of failures in a row. */
  onReadFailed: (reason: string, failuresInRow: number) => void;
  onPollSkipped: () => void;
  /** Called once when the pedal reads as pressed on the first poll. */
  onHeldAtStart: () => void;
}

/**
 * Polls one modem-status line of an open port every `pollIntervalMs`. A tick
 * that comes while the previous read is still running is skipped, so reads
 * never overlap. A pedal already pressed at the first read is ignored until it
 * reads released, so plugging in a held pedal fires nothing.
 */
export class ModemPoller {
  private readonly options: ModemPollerOptions;
  private timer: NodeJS.Timeout | undefined;
  private readInFlight = false;
  private failuresInRow = 0;
  private firstReadDone = false;
  private heldAtStart = false;

  constructor(options: ModemPollerOptions) {
    this.options = options;
  }

  start(): void {
    this.timer ??= setInterval(() => this.poll(), this.options.protocol.pollIntervalMs);
  }

  /** Stops polling; the result of a read still running is dropped. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private poll(): void {
    if (this.readInFlight) {
      this.options.onPollSkipped();
      return;
    }
    this.readInFlight = true;
    const { line, activeLow } = this.options.protocol;
    this.options.read((error, status) => {
      this.readInFlight = false;
      if (this.timer === undefined) return;
      const level = error || status === undefined ? undefined : readModemLine(status, line);
      if (level === undefined) {
        this.failuresInRow += 1;
        this.options.onReadFailed(error ? errorMessage(error) : `the serial binding does not report the ${line} line`, this.failuresInRow);
        return;
      }
      this.failuresInRow = 0;
      this.onLevel(activeLow ? !level : level);
    });
  }

  private onLevel(down: boolean): void {
    if (!this.firstReadDone) {
      this.firstReadDone = true;
      this.heldAtStart = down;
      if (down) this.options.onHeldAtStart();
    }
    if (this.heldAtStart) {
      if (down) return;
      this.heldAtStart = false;
    }
    this.options.onLevel(down);
  }
}

/** Reads one modem line; undefined when the binding does not report it (serialport 13 has no `ri`). */
function readModemLine(status: PortStatus, line: ModemLine): boolean | undefined {
  const lines: Partial<Record<ModemLine, boolean>> = status;
  return lines[line];
}
