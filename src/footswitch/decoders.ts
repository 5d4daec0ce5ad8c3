/** Receives each pedal level a decoder finds, in order. */
export type LevelListener = (down: boolean) => void;

const LEVEL_IGNORED = 0;
const LEVEL_DOWN = 1;
const LEVEL_UP = 2;

/** Maps single bytes to pedal levels; every other byte is ignored and counted. */
export class BytePedalDecoder {
  private readonly table = new Uint8Array(256);

  /** Builds the lookup table; a byte listed in both `down` and `up` means down. */
  constructor(protocol: { down: readonly number[]; up: readonly number[] }) {
    for (const byte of protocol.up) this.table[byte] = LEVEL_UP;
    for (const byte of protocol.down) this.table[byte] = LEVEL_DOWN;
  }

  /** Decodes one chunk and returns how many of its bytes were ignored. */
  decode(chunk: Uint8Array, onLevel: LevelListener): number {
    let ignored = 0;
    for (const byte of chunk) {
      const level = this.table[byte];
      if (level === LEVEL_DOWN) onLevel(true);
      else if (level === LEVEL_UP) onLevel(false);
      else ignored += 1;
    }
    return ignored;
  }
}

export interface LineDecodeResult {
  /** Complete lines that matched neither `down` nor `up`. */
  unknownLines: number;
  /** Lines dropped because they grew past `maxLineLength` bytes. */
  overlongLines: number;
}

const CR = 0x0d;
const LF = 0x0a;

/**
 * Splits a byte stream into lines ended by CR, LF or CRLF, trims them and
 * maps them to pedal levels. A partial line is kept across chunks, but never
 * more than `maxLineLength` bytes of it: a longer line is dropped up to its
 * terminator, so a device that never sends one cannot grow memory.
 */
export class LinePedalDecoder {
  private readonly down: ReadonlySet<string>;
  private readonly up: ReadonlySet<string>;
  readonly maxLineLength: number;
  private parts: Buffer[] = [];
  private partLength = 0;
  private discarding = false;

  constructor(protocol: { down: readonly string[]; up: readonly string[]; maxLineLength: number }) {
    this.down = new Set(protocol.down.map((line) => line.trim()));
    this.up = new Set(protocol.up.map((line) => line.trim()));
    this.maxLineLength = protocol.maxLineLength;
  }

  decode(chunk: Uint8Array, onLevel: LevelListener): LineDecodeResult {
    const result: LineDecodeResult = { unknownLines: 0, overlongLines: 0 };
    let start = 0;
    for (let index = 0; index < chunk.length; index += 1) {
      const byte = chunk[index];
      if (byte !== CR && byte !== LF) continue;
      this.append(chunk.subarray(start, index), result);
      this.endLine(onLevel, result);
      start = index + 1;
    }
    this.append(chunk.subarray(start), result);
    return result;
  }

  /** Drops a partial line, for example after a disconnect. */
  reset(): void {
    this.parts = [];
    this.partLength = 0;
    this.discarding = false;
  }

  private append(bytes: Uint8Array, result: LineDecodeResult): void {
    if (this.discarding || bytes.length === 0) return;
    if (this.partLength + bytes.length > this.maxLineLength) {
      this.reset();
      this.discarding = true;
      result.overlongLines += 1;
      return;
    }
    // Copied because the stream may hand out slices of a shared read pool.
    this.parts.push(Buffer.from(bytes));
    this.partLength += bytes.length;
  }

  private endLine(onLevel: LevelListener, result: LineDecodeResult): void {
    if (this.discarding) {
      this.discarding = false;
      return;
    }
    const line = Buffer.concat(this.parts, this.partLength).toString('utf8').trim();
    this.parts = [];
    this.partLength = 0;
    // CRLF ends a line at CR and leaves an empty one at LF; blank lines mean nothing.
    if (line === '') return;
    if (this.down.has(line)) onLevel(true);
    else if (this.up.has(line)) onLevel(false);
    else result.unknownLines += 1;
  }
}
