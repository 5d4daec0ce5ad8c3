import { isMap, parseDocument } from 'yaml';
import { ProfileError } from './load-profile.js';
import { checkFormatVersion, migrateProfileDocument, type MigrationNote } from './migrate.js';
import { CURRENT_FORMAT_VERSION } from './schema.js';

/**
 * Rewrites the text of one profile file in the current format version. Only
 * the values the migration changed are touched, through the yaml library's
 * Document API, so comments, key order and quoting elsewhere stay as written.
 * A base named by `extends` is not followed: migrate each file on its own.
 */
export function migrateProfileText(text: string, file: string): { text: string; notes: MigrationNote[] } {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const firstError = document.errors[0];
  if (firstError) {
    throw new ProfileError(file, [{ path: '', message: `not valid YAML or JSON: ${firstError.message.split('\n')[0] ?? ''}`.replace(/:\s*$/, '') }]);
  }
  const plain: unknown = document.toJS();
  if (typeof plain !== 'object' || plain === null || Array.isArray(plain)) {
    const got = Array.isArray(plain) ? `a list of ${plain.length}` : JSON.stringify(plain);
    throw new ProfileError(file, [{ path: '', message: `expected object, got ${got}; a profile is a mapping of sections` }]);
  }
  const versionProblem = checkFormatVersion(plain as Record<string, unknown>);
  if (versionProblem) throw new ProfileError(file, [{ path: 'formatVersion', message: versionProblem }]);

  const { document: migrated, notes } = migrateProfileDocument(plain, file);
  for (const note of notes) {
    if (note.path === 'formatVersion') continue;
    const keys = note.path.split('.').map((key) => (/^\d+$/.test(key) ? Number(key) : key));
    const value = valueAt(migrated, keys);
    if (value === undefined) {
      document.deleteIn(keys);
    } else if (document.hasIn(keys)) {
      document.setIn(keys, value);
    } else {
      // A new key goes first in its mapping, as the migration puts it.
      const parent: unknown = document.getIn(keys.slice(0, -1), true);
      const key = keys[keys.length - 1];
      if (isMap(parent) && key !== undefined) parent.items.unshift(document.createPair(key, value));
      else document.setIn(keys, value);
    }
  }
  if (notes.length === 0) return { text, notes };
  document.setIn(['formatVersion'], CURRENT_FORMAT_VERSION);
  // lineWidth 0 keeps a long flow mapping such as { name: pacs, ... } on one line; no padding keeps [0x31] as written.
  return { text: document.toString({ lineWidth: 0, flowCollectionPadding: false }), notes };
}

function valueAt(value: unknown, keys: ReadonlyArray<string | number>): unknown {
  let current = value;
  for (const key of keys) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[key];
  }
  return current;
}
