import { randomInt } from 'node:crypto';
import { EndocapError, ErrorCodes } from '../errors.js';

/** Maximum length of a UID value (PS3.5 9.1). */
export const MAX_UID_LENGTH = 64;

/** Maximum root length, so that a generated suffix keeps at least 9 random digits. */
export const MAX_UID_ROOT_LENGTH = 40;

/** Digits of a millisecond timestamp until the year 2286. */
const TIME_DIGITS = 13;

/** crypto.randomInt needs a range below 2^48, so the random component has at most 14 digits. */
const MAX_RANDOM_DIGITS = 14;

const uidPattern = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;

/** Checks the UID rules of PS3.5 9.1: numeric components without leading zeros, dot-separated, at most 64 characters. */
export function isValidUid(uid: string): boolean {
  return uid.length > 0 && uid.length <= MAX_UID_LENGTH && uidPattern.test(uid);
}

export interface UidGeneratorOptions {
  /** Clock in milliseconds since the Unix epoch; tests pass a fixed one. */
  now?: () => number;
  /** Uniform random integer in [0, maxExclusive); tests pass a fixed one. */
  randomInt?: (maxExclusive: number) => number;
}

/**
 * Creates a generator of UIDs `<root>.<t>.<n>`:
 * - `t` is a millisecond timestamp that never goes backwards within one generator
 *   (it stays at the last value while the clock is behind it);
 * - `n` is a random start, drawn again for every new `t`, plus a counter of the UIDs
 *   already made with that `t`, modulo 10^D. D is 14 for roots of up to 35 characters
 *   and shrinks to 9 for a 40-character root, so the UID stays within 64 characters.
 *
 * Collision properties:
 * - One generator never repeats a UID, because (t, counter) strictly increases.
 * - Two generators with the same root (a restart of this process, or another box)
 *   can only collide when they use the same `t` and their counter ranges overlap.
 *   For one UID each in the same millisecond that happens with probability 10^-D.
 *   A restart almost never reuses a `t`, unless the clock was set back.
 * - Boxes that share a root are therefore unique only with that probability. Give
 *   each box its own root arc (such as `<org root>.<box number>`) for a guarantee.
 */
export function createUidGenerator(root: string, options: UidGeneratorOptions = {}): () => string {
  if (!isValidUid(root) || root.length > MAX_UID_ROOT_LENGTH) {
    throw new EndocapError(
      ErrorCodes.PROFILE_INVALID,
      `invalid UID root "${root}": expected numeric components without leading zeros, at most ${MAX_UID_ROOT_LENGTH} characters`,
    );
  }
  const now = options.now ?? Date.now;
  const random = options.randomInt ?? ((maxExclusive: number) => randomInt(maxExclusive));

  let lastTime = -1;
  let start = 0;
  let counter = 0;

  return () => {
    const clock = Math.max(0, Math.floor(now()));
    if (clock > lastTime) {
      lastTime = clock;
      counter = 0;
    } else {
      counter += 1;
    }

    let digits = randomDigits(root, lastTime);
    if (counter >= 10 ** digits) {
      lastTime += 1;
      counter = 0;
      digits = randomDigits(root, lastTime);
    }
    if (counter === 0) start = random(10 ** digits);

    const n = (start + counter) % 10 ** digits;
    return `${root}.${lastTime}.${n}`;
  };
}

function randomDigits(root: string, time: number): number {
  const free = MAX_UID_LENGTH - root.length - 2 - Math.max(TIME_DIGITS, String(time).length);
  return Math.min(MAX_RANDOM_DIGITS, free);
}
