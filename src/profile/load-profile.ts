import path from 'node:path';
import type { z } from 'zod';
import { EndocapError, ErrorCodes } from '../errors.js';
import { profileFields, schemaPath } from './json-schema.js';
import { isMapping, mergeProfileSources, originOf, type ProfileSource } from './merge-profiles.js';
import { checkFormatVersion, migrateProfileDocument, type MigrationNote } from './migrate.js';
import { parseProfileText, readProfileChain, type ChainFile } from './profile-chain.js';
import { CURRENT_FORMAT_VERSION, profileSchema, type Profile } from './schema.js';

/** Exit code for a bad configuration (EX_CONFIG from sysexits.h); the unit's RestartPreventExitStatus keeps systemd from restarting on it. */
export const EXIT_CONFIG = 78;

/** One problem in a profile, with the dotted path of the offending value. */
export interface ProfileProblem {
  /** File the offending value comes from, when it is not the profile file itself (a base it extends). */
  file?: string;
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
  return problems.map((problem) => `${problem.file ?? file}: ${problem.path || '(top level)'}: ${problem.message}`).join('\n');
}

/** A valid profile, what migration changed in its files, and the files it was merged from, base first. */
export interface LoadedProfile {
  profile: Profile;
  notes: MigrationNote[];
  files: string[];
}

/**
 * Reads, parses and validates a profile file (YAML or JSON) and the base files
 * it extends. Every problem is collected before the error is thrown, so one
 * run lists them all.
 */
export async function loadProfile(file: string): Promise<Profile> {
  return (await loadProfileWithNotes(file)).profile;
}

/** As loadProfile, and returns what was migrated from an older format version. */
export async function loadProfileWithNotes(file: string): Promise<LoadedProfile> {
  const chain = await readProfileChain(file);
  if ('problems' in chain) throw new ProfileError(file, attributeProblems(chain.problems, file, [file]));
  return buildProfile(chain.files, file);
}

/**
 * Parses and validates the text of a profile that extends no base; `file` is
 * used in messages and to resolve relative paths.
 */
export function parseProfile(text: string, file: string): Profile {
  return parseProfileWithNotes(text, file).profile;
}

/** As parseProfile, and returns what was migrated from an older format version. */
export function parseProfileWithNotes(text: string, file: string): LoadedProfile {
  const result = parseProfileText(text, file);
  if ('problem' in result) throw new ProfileError(file, [result.problem]);
  if (isMapping(result.parsed) && 'extends' in result.parsed) {
    // Reading a base is file I/O, which this synchronous function does not do.
    throw new ProfileError(file, [{ path: 'extends', message: 'a base profile is read only when the profile is loaded from its file (loadProfile)' }]);
  }
  return buildProfile([{ file, directory: path.dirname(path.resolve(file)), parsed: result.parsed }], file);
}

/** Checks and migrates each file on its own, then merges them and validates the result. */
function buildProfile(files: ChainFile[], topFile: string): LoadedProfile {
  const names = files.map((entry) => entry.file);
  const problems: ProfileProblem[] = [];
  const notes: MigrationNote[] = [];
  const sources: ProfileSource[] = [];
  for (const entry of files) {
    if (!isMapping(entry.parsed)) {
      problems.push({ file: entry.file, path: '', message: `expected object, got ${describeValue(entry.parsed)}` });
      continue;
    }
    const versionProblem = checkFormatVersion(entry.parsed);
    if (versionProblem) problems.push({ file: entry.file, path: 'formatVersion', message: versionProblem });
    const migrated = migrateProfileDocument(entry.parsed, entry.file);
    notes.push(...migrated.notes);
    const document = structuredClone(migrated.document) as Record<string, unknown>;
    delete document['extends'];
    // The version problem is reported above; the rest of the file is still validated.
    if (versionProblem) document['formatVersion'] = CURRENT_FORMAT_VERSION;
    resolvePaths(document, [], entry.directory);
    sources.push({ file: entry.file, document });
  }
  if (sources.length < files.length) throw new ProfileError(topFile, attributeProblems(problems, topFile, names));

  const { document, origins } = mergeProfileSources(sources);
  const result = profileSchema.safeParse(document);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const problem = describeIssue(issue, document);
      const keys = issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined ? [...issue.path, issue.keys[0]] : issue.path;
      const origin = originOf(keys, origins);
      problems.push(origin === undefined ? problem : { file: origin, ...problem });
    }
  }
  if (problems.length > 0) throw new ProfileError(topFile, attributeProblems(problems, topFile, names));
  return { profile: result.data as Profile, notes, files: names };
}

/**
 * Names the file of each problem in a chain. A problem from a base file also
 * names the profile that extends it, and one that no single file caused (a
 * missing required value) names the files that were merged.
 */
function attributeProblems(problems: ProfileProblem[], topFile: string, files: string[]): ProfileProblem[] {
  const bases = files.filter((file) => file !== topFile);
  return problems.map((problem) => {
    if (problem.file !== undefined && problem.file !== topFile) return { ...problem, message: `${problem.message} (base of ${topFile})` };
    if (problem.file === undefined && bases.length > 0) return { file: topFile, path: problem.path, message: `${problem.message} (merged with ${bases.join(', ')})` };
    return { path: problem.path, message: problem.message };
  });
}

/**
 * Resolves relative file and folder names (spool.directory, stateDirectory and
 * every field ending in File) against the folder of the file that sets them.
 */
function resolvePaths(value: unknown, keys: Array<string | number>, directory: string): unknown {
  if (Array.isArray(value)) {
    value.forEach((item, index) => {
      value[index] = resolvePaths(item, [...keys, index], directory);
    });
    return value;
  }
  if (isMapping(value)) {
    for (const [key, child] of Object.entries(value)) value[key] = resolvePaths(child, [...keys, key], directory);
    return value;
  }
  if (typeof value === 'string' && value !== '' && profileFields().get(schemaPath(keys))?.isPath === true) return path.resolve(directory, value);
  return value;
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
