import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { Logger } from '../log.js';
import type { FootswitchConfig } from '../profile/schema.js';
import type { FootswitchEvents } from './events.js';

export type KeyboardFootswitchConfig = Extract<FootswitchConfig, { kind: 'keyboard' }>;

/**
 * Spaces closer together than this are the terminal's key auto-repeat (about
 * 30 per second on common systems) and extend the press they follow.
 */
const KEY_REPEAT_GAP_MS = 100;

/**
 * Clip keys closer together than this are auto-repeat of a held key. It is
 * longer than the repeat delay (often 250-600 ms), because a repeat taken for a
 * new press would stop the clip just started.
 */
const CLIP_KEY_REPEAT_GAP_MS = 700;

const SPACE = 0x20;
const LOWER_C = 0x63;
const UPPER_C = 0x43;
const CTRL_C = 0x03;
const LOWER_Q = 0x71;
const UPPER_Q = 0x51;

/** The part of a terminal stream the pedal needs; `process.stdin` and `tty.ReadStream` fit. */
export interface TerminalInput extends Readable {
  isTTY?: boolean;
  isRaw?: boolean;
  setRawMode?(mode: boolean): unknown;
}

export interface KeyboardPedalEvents extends FootswitchEvents {
  /** `q` or Ctrl-C was typed; raw mode turns Ctrl-C into a key instead of SIGINT. */
  quitRequested: [];
}

export interface KeyboardPedalOptions {
  config: KeyboardFootswitchConfig;
  log: Logger;
  /** Terminal to read; defaults to process.stdin. */
  input?: TerminalInput;
  /** False leaves the terminal alone, for runs without an operator. Defaults to true. */
  enabled?: boolean;
  /** Clock in Unix epoch ms; defaults to Date.now. */
  clock?: () => number;
}

export interface KeyboardPedalStatus {
  connected: boolean;
  path: string;
  lastError?: string;
}

const PATH = 'stdin';

/**
 * Space bar as a pedal, for the demo and bench work. A terminal sends no
 * key-release, so every space is a short press: `gestures.short` is the only
 * mapping used. The `c` key starts and stops a clip: it is reported as a short
 * press with the action `clip`, whatever the gestures map. The terminal is put in raw mode while running and restored on
 * `stop()` or process exit.
 */
export class KeyboardPedal extends EventEmitter<KeyboardPedalEvents> {
  private readonly config: KeyboardFootswitchConfig;
  private readonly log: Logger;
  private readonly input: TerminalInput;
  private readonly enabled: boolean;
  private readonly clock: () => number;
  private readonly onData = (chunk: Buffer | string): void => this.handleKeys(chunk);
  private readonly restoreOnExit = (): void => this.restoreTerminal();

  private running = false;
  private wasRaw = false;
  private lastSpaceAt: number | undefined;
  private lastClipKeyAt: number | undefined;
  private lastError: string | undefined;

  constructor(options: KeyboardPedalOptions) {
    super();
    this.config = options.config;
    this.log = options.log.child({ component: 'keyboard-pedal' });
    this.input = options.input ?? process.stdin;
    this.enabled = options.enabled ?? true;
    this.clock = options.clock ?? Date.now;
  }

  /** Starts reading keys when the input is a terminal; otherwise logs why and does nothing. */
  async start(): Promise<void> {
    if (this.running) return;
    if (!this.enabled) {
      this.log.info({}, 'keyboard pedal disabled');
      return;
    }
    const { input } = this;
    if (input.isTTY !== true || input.setRawMode === undefined) {
      this.lastError = 'standard input is not a terminal, so the space bar cannot act as a pedal';
      this.log.warn({}, 'keyboard pedal needs a terminal on standard input');
      return;
    }

    this.wasRaw = input.isRaw === true;
    input.setRawMode(true);
    process.once('exit', this.restoreOnExit);
    input.on('data', this.onData);
    input.resume();
    this.running = true;
    this.lastError = undefined;
    this.log.info({ action: this.config.gestures.short }, 'keyboard pedal started, space presses, c records clips, q quits');
    this.emit('connected', { path: PATH });
  }

  /** Stops reading and restores the terminal mode found at start. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.input.off('data', this.onData);
    this.input.pause();
    this.restoreTerminal();
    process.off('exit', this.restoreOnExit);
    this.log.info({}, 'keyboard pedal stopped');
    this.emit('disconnected', { path: PATH, reason: 'stopped' });
  }

  status(): KeyboardPedalStatus {
    const status: KeyboardPedalStatus = { connected: this.running, path: PATH };
    if (this.lastError !== undefined) status.lastError = this.lastError;
    return status;
  }

  private restoreTerminal(): void {
    this.input.setRawMode?.(this.wasRaw);
  }

  private handleKeys(chunk: Buffer | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    for (const byte of bytes) {
      if (byte === SPACE) this.onSpace();
      else if (byte === LOWER_C || byte === UPPER_C) this.onClipKey();
      else if (byte === LOWER_Q || byte === UPPER_Q || byte === CTRL_C) this.emit('quitRequested');
    }
  }

  private onClipKey(): void {
    const at = this.clock();
    const previous = this.lastClipKeyAt;
    this.lastClipKeyAt = at;
    if (previous !== undefined && at - previous < CLIP_KEY_REPEAT_GAP_MS) return;
    this.emit('gesture', { gesture: 'short', action: 'clip', pressedAt: at });
  }

  private onSpace(): void {
    const at = this.clock();
    const previous = this.lastSpaceAt;
    this.lastSpaceAt = at;
    // NOTE: the first auto-repeat comes after the repeat delay (often 250-600 ms),
    // which looks like a new press, so holding the space bar gives two presses.
    if (previous !== undefined && at - previous < KEY_REPEAT_GAP_MS) return;

    this.emit('pedalChanged', { down: true, at });
    this.emit('pedalChanged', { down: false, at });
    this.emit('gesture', { gesture: 'short', action: this.config.gestures.short, pressedAt: at });
  }
}
