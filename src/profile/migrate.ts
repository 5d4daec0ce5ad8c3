import { CURRENT_FORMAT_VERSION } from './schema.js';

/** One change made by a migration step, worded so that biomed staff can make it in the file by hand. */
export interface MigrationNote {
  /** Profile file the note is about, as named to the loader; a base file when the profile extends one. */
  file: string;
  fromVersion: number;
  toVersion: number;
  /** Dotted path of the value that changed, such as `destinations.0.kind`. */
  path: string;
  change: string;
}

type Document = Record<string, unknown>;
type StepNote = Pick<MigrationNote, 'path' | 'change'>;

interface Migration {
  from: number;
  /** Changes the document in place and returns what it changed. */
  apply: (document: Document) => StepNote[];
}

/**
 * One step per format version, oldest first. A step changes only what its
 * version changed, so a profile several versions old goes through each step.
 */
const migrations: Migration[] = [
  {
    // Version 2 added DICOMweb (STOW-RS) destinations, so each destination names its protocol.
    from: 1,
    apply: (document) => {
      const destinations = document['destinations'];
      if (!Array.isArray(destinations)) return [];
      const notes: StepNote[] = [];
      destinations.forEach((destination: unknown, index) => {
        if (typeof destination !== 'object' || destination === null || Array.isArray(destination)) return;
        const entry = destination as Document;
        if ('kind' in entry) return;
        // Put kind first so that a profile written back reads naturally.
        const copy = { kind: 'dicom', ...entry };
        for (const key of Object.keys(entry)) delete entry[key];
        Object.assign(entry, copy);
        notes.push({ path: `destinations.${index}.kind`, change: 'added "kind: dicom": version 2 destinations name their protocol (dicom or stow-rs)' });
      });
      return notes;
    },
  },
];

/**
 * Checks the formatVersion of one profile file before migration. Returns the
 * problem message, or undefined when the version is current or can be migrated.
 */
export function checkFormatVersion(document: Document): string | undefined {
  const expected = `${CURRENT_FORMAT_VERSION} (or an older version, migrated when loaded)`;
  if (!('formatVersion' in document)) return `missing required value, expected ${expected}`;
  const version = document['formatVersion'];
  if (typeof version === 'number' && Number.isInteger(version) && version >= 1 && version <= CURRENT_FORMAT_VERSION) return undefined;
  const got = typeof version === 'number' || typeof version === 'string' ? JSON.stringify(version) : String(version);
  const newer = typeof version === 'number' && version > CURRENT_FORMAT_VERSION ? '; a newer endocap wrote this profile, so update endocap' : '';
  return `expected ${expected}, got ${got}${newer}`;
}

/**
 * Brings a parsed profile document to the current format version. A document
 * without a numeric formatVersion, or with an unknown one, is returned as it
 * is; checkFormatVersion reports those. The first note of a migrated file is
 * about formatVersion itself, so a file whose version alone changed gets one too.
 */
export function migrateProfileDocument(document: unknown, file: string): { document: unknown; notes: MigrationNote[] } {
  if (typeof document !== 'object' || document === null || Array.isArray(document)) return { document, notes: [] };
  const version = (document as Document)['formatVersion'];
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version >= CURRENT_FORMAT_VERSION) return { document, notes: [] };
  const migrated = structuredClone(document) as Document;
  const notes: MigrationNote[] = [
    {
      file,
      fromVersion: version,
      toVersion: CURRENT_FORMAT_VERSION,
      path: 'formatVersion',
      change: `migrated in memory from ${version} to ${CURRENT_FORMAT_VERSION}; "endocap profile migrate ${file} --write" updates the file`,
    },
  ];
  for (const migration of migrations) {
    if (migration.from < version) continue;
    const toVersion = migration.from + 1;
    for (const note of migration.apply(migrated)) notes.push({ file, fromVersion: migration.from, toVersion, ...note });
    migrated['formatVersion'] = toVersion;
  }
  return { document: migrated, notes };
}

/** `destinations.0.kind: added "kind: dicom" ... (format version 1 to 2)`; the file is not included. */
export function formatMigrationNote(note: MigrationNote): string {
  return `${note.path}: ${note.change} (format version ${note.fromVersion} to ${note.toVersion})`;
}
