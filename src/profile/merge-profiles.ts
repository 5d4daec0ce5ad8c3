import { profileFields, schemaPath } from './json-schema.js';

type Mapping = Record<string, unknown>;

/** One file of an `extends` chain, already migrated to the current format version. */
export interface ProfileSource {
  /** File name as shown in messages. */
  file: string;
  document: Mapping;
}

export interface MergedProfile {
  document: Mapping;
  /**
   * File that set each value, keyed by dotted document path (`station.aeTitle`,
   * `destinations`). Lists and scalars are recorded whole, mappings by their keys.
   */
  origins: Map<string, string>;
}

export function isMapping(value: unknown): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Merges the files of a chain, base first. Mappings merge key by key, and a
 * list or scalar in a later file replaces the earlier value. A null removes
 * the earlier value, except in a field where null is itself a valid value
 * (such as worklist.modality). A mapping whose `kind` differs from the earlier
 * one's replaces it whole, because the other fields depend on the kind.
 */
export function mergeProfileSources(sources: readonly ProfileSource[]): MergedProfile {
  const origins = new Map<string, string>();
  const [first, ...rest] = sources;
  if (!first) return { document: {}, origins };
  // The first file is taken as written: a null there has no base value to remove, so validation reports it.
  const document = structuredClone(first.document);
  recordOrigins(document, [], first.file, origins);
  for (const source of rest) mergeMapping(document, source.document, [], source.file, origins);
  return { document, origins };
}

function mergeMapping(target: Mapping, source: Mapping, parentKeys: string[], file: string, origins: Map<string, string>): void {
  for (const [key, value] of Object.entries(source)) {
    const keys = [...parentKeys, key];
    const current = target[key];
    if (value === null && profileFields().get(schemaPath(keys))?.nullable !== true) {
      delete target[key];
      dropOrigins(keys, origins);
    } else if (isMapping(value) && isMapping(current) && !kindChanged(current, value)) {
      mergeMapping(current, value, keys, file, origins);
    } else {
      dropOrigins(keys, origins);
      target[key] = structuredClone(value);
      recordOrigins(value, keys, file, origins);
    }
  }
}

function kindChanged(current: Mapping, next: Mapping): boolean {
  return 'kind' in current && 'kind' in next && current['kind'] !== next['kind'];
}

function recordOrigins(value: unknown, keys: string[], file: string, origins: Map<string, string>): void {
  if (isMapping(value) && Object.keys(value).length > 0) {
    for (const [key, child] of Object.entries(value)) recordOrigins(child, [...keys, key], file, origins);
  } else if (keys.length > 0) {
    origins.set(keys.join('.'), file);
  }
}

function dropOrigins(keys: string[], origins: Map<string, string>): void {
  const dotted = keys.join('.');
  for (const path of [...origins.keys()]) {
    if (path === dotted || path.startsWith(`${dotted}.`)) origins.delete(path);
  }
}

/**
 * Finds the file that set the value at `keys`, or at the list or scalar that
 * contains it. Returns undefined for a mapping merged from several files and
 * for a value no file set (a missing required field).
 */
export function originOf(keys: readonly PropertyKey[], origins: ReadonlyMap<string, string>): string | undefined {
  const parts = keys.map(String);
  for (let length = parts.length; length > 0; length -= 1) {
    const file = origins.get(parts.slice(0, length).join('.'));
    if (file !== undefined) return file;
  }
  return undefined;
}
