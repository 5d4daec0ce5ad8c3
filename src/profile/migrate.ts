import { CURRENT_FORMAT_VERSION } from './schema.js';

/** What a migration step changed, said so that biomed staff can update the file by hand. */
export interface MigrationNote {
  fromVersion: number;
  toVersion: number;
  /** Dotted path of the value that changed, such as `destinations.0.kind`. */
  path: string;
  change: string;
}

type Document = Record<string, unknown>;

interface Migration {
  from: number;
  /** Changes the document in place and returns what it changed. */
  apply: (document: Document) => Array<Omit<MigrationNote, 'fromVersion' | 'toVersion'>>;
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
      const notes: Array<Omit<MigrationNote, 'fromVersion' | 'toVersion'>> = [];
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
 * Brings a parsed profile document to the current format version. A document
 * without a numeric formatVersion, or with an unknown one, is returned as it
 * is, so that validation reports the value.
 */
export function migrateProfileDocument(document: unknown): { document: unknown; notes: MigrationNote[] } {
  if (typeof document !== 'object' || document === null || Array.isArray(document)) return { document, notes: [] };
  const version = (document as Document)['formatVersion'];
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1 || version >= CURRENT_FORMAT_VERSION) return { document, notes: [] };
  const migrated = structuredClone(document) as Document;
  const notes: MigrationNote[] = [];
  for (const migration of migrations) {
    if (migration.from < version) continue;
    const toVersion = migration.from + 1;
    for (const note of migration.apply(migrated)) notes.push({ fromVersion: migration.from, toVersion, ...note });
    migrated['formatVersion'] = toVersion;
  }
  return { document: migrated, notes };
}

/** `destinations.0.kind: added "kind: dicom" ... (format version 1 to 2)` */
export function formatMigrationNote(note: MigrationNote): string {
  return `${note.path}: ${note.change} (format version ${note.fromVersion} to ${note.toVersion})`;
}
