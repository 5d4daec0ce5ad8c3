/**
 * Spool object ids: `20261214T101530.123Z-000000`, a UTC millisecond time and a
 * sequence number. They sort by string in the order objects were added, carry
 * no patient data, and are safe as file names.
 */

const SEQUENCE_DIGITS = 6;
const SEQUENCE_LIMIT = 10 ** SEQUENCE_DIGITS;
const idPattern = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z-(\d{6})$/;

export function isObjectId(value: string): boolean {
  return idPattern.test(value);
}

/**
 * Generator of strictly increasing ids. It never issues an id at or below the
 * last one it issued or observed, so ids stay unique and ordered when the clock
 * is set back: the time part then stays put and the sequence number counts up.
 */
export class ObjectIdGenerator {
  private lastTime = 0;
  private lastSequence = -1;
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** Records an id found on disk so that new ids sort after it. Returns false for a string that is not an id. */
  observe(id: string): boolean {
    const parsed = parseObjectId(id);
    if (parsed === undefined) return false;
    if (parsed.time > this.lastTime || (parsed.time === this.lastTime && parsed.sequence > this.lastSequence)) {
      this.lastTime = parsed.time;
      this.lastSequence = parsed.sequence;
    }
    return true;
  }

  next(): string {
    const clock = Math.floor(this.now());
    if (clock > this.lastTime) {
      this.lastTime = clock;
      this.lastSequence = 0;
    } else if (this.lastSequence + 1 < SEQUENCE_LIMIT) {
      this.lastSequence += 1;
    } else {
      this.lastTime += 1;
      this.lastSequence = 0;
    }
    return formatObjectId(this.lastTime, this.lastSequence);
  }
}

function formatObjectId(time: number, sequence: number): string {
  const iso = new Date(time).toISOString(); // 2026-12-14T10:15:30.123Z
  const compact = iso.replace(/[-:]/g, '');
  return `${compact}-${String(sequence).padStart(SEQUENCE_DIGITS, '0')}`;
}

function parseObjectId(id: string): { time: number; sequence: number } | undefined {
  const match = idPattern.exec(id);
  if (match === null) return undefined;
  const [year, month, day, hour, minute, second, millisecond, sequence] = match.slice(1).map(Number) as [
    number, number, number, number, number, number, number, number,
  ];
  const time = Date.UTC(year, month - 1, day, hour, minute, second, millisecond);
  return { time, sequence };
}
