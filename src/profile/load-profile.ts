import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { EndocapError, ErrorCodes } from '../errors.js';
import { migrateProfileDocument, type MigrationNote } from './migrate.js';
import { profileSchema, type Profile } from './schema.js';

/** Exit code for a bad configuration (EX_CONFIG from sysexits.h); the unit's RestartPreventExitStatus keeps systemd from restarting on it. */
export const EXIT_CONFIG = 78;

/** One problem in a profile, with the dotted path of the offending value. */
export interface ProfileProblem {
  path: string;
  message: string;
}

export class ProfileError extends EndocapError {
  readonly file: string;
  readonly problems: ProfileProblem[];

  constructor(file: string, problems: ProfileProblem[]) {
    super(ErrorCodes.PROFILE_INVALID, formatProblems(file, problems));
    this.name = 'ProfileError';
    this.file = file;
    this.problems = problems;
  }
}

/** Formats problems one per line as `file: path: message`. */
export function formatProblems(file: string, problems: ProfileProblem[]): string {
  return problems.map((problem) => `${file}: ${problem.path || '(top level)'}: ${problem.message}`).join('\n');
}

/**
 * Reads, parses and validates a profile file (YAML or JSON). Every problem is
 * collected before the error is thrown, so one run lists them all.
 */
export async function loadProfile(file: string): Promise<Profile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot be read (${(error as Error).message})`;
    throw new ProfileError(file, [{ path: '', message: `${reason}; pass the path of an existing profile` }]);
  }
  return parseProfile(text, file);
}

/** Parses and validates profile text; `file` is used in messages and to resolve relative folders. */
export function parseProfile(text: string, file: string): Profile {
  return parseProfileWithNotes(text, file).profile;
}

/** As parseProfile, and says what was migrated from an older format version. */
export function parseProfileWithNotes(text: string, file: string): { profile: Profile; notes: MigrationNote[] } {
  let parsed: unknown;
  try {
    parsed = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (error) {
    const firstLine = error instanceof YAMLParseError ? (error.message.split('\n')[0] ?? error.message) : String(error);
    const message = firstLine.replace(/:\s*$/, '');
    throw new ProfileError(file, [{ path: '', message: `not valid YAML or JSON: ${message}` }]);
  }
  const { document, notes } = migrateProfileDocument(parsed);
  const result = profileSchema.safeParse(document);
  if (!result.success) {
    throw new ProfileError(file, result.error.issues.map((issue) => describeIssue(issue, document)));
  }
  return { profile: resolveFolders(result.data, path.dirname(path.resolve(file))), notes };
}

/** Relative spool and state folders are taken relative to the profile's own folder. */
function resolveFolders(profile: Profile, baseDirectory: string): Profile {
  return {
    ...profile,
    spool: { ...profile.spool, directory: path.resolve(baseDirectory, profile.spool.directory) },
    stateDirectory: path.resolve(baseDirectory, profile.stateDirectory),
  };
}

function describeIssue(issue: z.core.$ZodIssue, document: unknown): ProfileProblem {
  const issuePath = issue.path.map(String);
  const received = valueAt(document, issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return {
        path: issuePath.join('.'),
        message: `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((key) => `"${key}"`).join(', ')}; remove ${issue.keys.length > 1 ? 'them' : 'it'} or check the spelling`,
      };
    case 'invalid_type':
      return {
        path: issuePath.join('.'),
        message: received === undefined ? `missing required value, expected ${issue.expected}` : `expected ${issue.expected}, got ${describeValue(received)}`,
      };
    case 'invalid_value':
      return { path: issuePath.join('.'), message: `expected one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}, got ${describeValue(received)}` };
    case 'invalid_union':
      return { path: issuePath.join('.'), message: `expected ${describeUnion(issue.message)}, got ${describeValue(received)}` };
    case 'too_small':
      return { path: issuePath.join('.'), message: `expected ${customOr(issue.message, describeBound(issue.inclusive === false ? 'greater than' : 'at least', issue.origin, issue.minimum))}, got ${describeValue(received)}` };
    case 'too_big':
      return { path: issuePath.join('.'), message: `expected ${customOr(issue.message, describeBound(issue.inclusive === false ? 'less than' : 'at most', issue.origin, issue.maximum))}, got ${describeValue(received)}` };
    case 'invalid_format':
    case 'custom':
      return { path: issuePath.join('.'), message: `expected ${lowerFirst(issue.message)}, got ${describeValue(received)}` };
    default:
      return { path: issuePath.join('.'), message: `${issue.message}, got ${describeValue(received)}` };
  }
}

function valueAt(document: unknown, keys: readonly PropertyKey[]): unknown {
  let current: unknown = document;
  for (const key of keys) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Rewrites zod's union messages, such as "Invalid discriminator value. Expected
 * 'serial' | 'keyboard' | 'none'", in the form the other messages use.
 */
function describeUnion(message: string): string {
  const options = /Expected ((?:'[^']*'(?: \| )?)+)\s*$/.exec(message)?.[1];
  if (options) return `one of ${options.split(' | ').map((option) => `"${option.slice(1, -1)}"`).join(', ')}`;
  return message.replace(/^Invalid input:?\s*/, '') || 'a valid variant';
}

/** Lower-cases the first letter of a sentence, but not of an acronym such as "AE" or "UID". */
function lowerFirst(text: string): string {
  if (/^[A-Z][A-Z]/.test(text)) return text;
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/** zod's own messages start with "Too big" or "Too small"; a message set in the schema is kept. */
function customOr(message: string, generated: string): string {
  return /^Too (big|small)/.test(message) ? generated : lowerFirst(message);
}

function describeBound(relation: string, origin: string, bound: number | bigint): string {
  switch (origin) {
    case 'string':
      return `${relation} ${bound} characters`;
    case 'array':
      return `${relation} ${bound} items`;
    default:
      return `a number ${relation} ${bound}`;
  }
}
