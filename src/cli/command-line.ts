import { pino } from 'pino';
import { errorMessage } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import { EXIT_CONFIG, loadProfile, ProfileError } from '../profile/load-profile.js';
import type { Profile } from '../profile/schema.js';

export const DEFAULT_PROFILE = '/etc/endocap/profile.yaml';
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 64;
export { EXIT_CONFIG };

export const EXIT_CODES_HELP = 'Exit codes: 0 success, 1 runtime failure, 64 usage error, 78 invalid profile.';

/**
 * Runs the command's parseArgs call. Returns the exit code to end with when
 * the arguments are wrong or `--help` was given, after printing the help.
 */
export function parseCommand<R extends { values: { help?: boolean | undefined } }>(name: string, help: string, parse: () => R): R | number {
  let parsed: R;
  try {
    parsed = parse();
  } catch (error) {
    return usage(name, describeParseError(error), help);
  }
  if (parsed.values.help === true) {
    process.stdout.write(`${help}\n`);
    return 0;
  }
  return parsed;
}

/**
 * Shortens Node's parseArgs message for an unknown option, whose advice about
 * positional arguments after '--' does not apply to endocap's commands.
 */
export function describeParseError(error: unknown): string {
  const unknown = /^Unknown option '([^']+)'/.exec(errorMessage(error));
  return unknown === null ? errorMessage(error) : `unknown option "${unknown[1]}"`;
}

/** Prints a usage problem with the help and returns the usage exit code. */
export function usage(name: string, problem: string, help: string): number {
  process.stderr.write(`endocap ${name}: ${problem}\n\n${help}\n`);
  return EXIT_USAGE;
}

/** Loads the profile, or prints every problem and returns EXIT_CONFIG. */
export async function loadCommandProfile(file: string): Promise<Profile | number> {
  try {
    return await loadProfile(file);
  } catch (error) {
    if (error instanceof ProfileError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT_CONFIG;
    }
    throw error;
  }
}

/** Creates the logger of an operator command: warnings only, on stderr, so that stdout carries the output. */
export function commandLogger(): Logger {
  return createLogger('warn', pino.destination({ fd: 2, sync: true }));
}

/** Parses a positive number of seconds, or returns undefined. */
export function parseSeconds(text: string | undefined, fallback: number): number | undefined {
  if (text === undefined) return fallback;
  const value = Number(text);
  return Number.isFinite(value) && value > 0 && value <= 86_400 ? value : undefined;
}
