import { chmod, chown, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { profileJsonSchema } from '../profile/json-schema.js';
import { EXIT_CONFIG, loadProfileWithNotes, ProfileError } from '../profile/load-profile.js';
import { formatMigrationNote, type MigrationNote } from '../profile/migrate.js';
import { migrateProfileText } from '../profile/migrate-text.js';
import { readProfileFile } from '../profile/profile-chain.js';
import { DOCS_BEGIN, DOCS_END, renderProfileReference, replaceReference } from '../profile/profile-docs.js';
import { syncDirectory, writeFileFlushed } from '../spool/durable-file.js';
import { parseCommand } from './command-line.js';

export { profileJsonSchema };

const HELP = `Usage: endocap profile check FILE
       endocap profile migrate FILE [--write]
       endocap profile schema
       endocap profile docs [--write FILE]

check    Validates FILE and the base profiles it extends, and prints every
         problem as "FILE: path: message". A valid profile in an older format
         version is migrated in memory: each change is printed after "valid".
         Exit 0 when valid, 78 when not.
migrate  Prints FILE rewritten in the current format version, comments kept;
         with --write, replaces FILE instead. Base files named by extends are
         not changed: migrate each one on its own. Exit 78 when FILE cannot
         be parsed or has an unknown format version.
schema   Prints the JSON Schema of profiles (hw-profiles/profile.schema.json).
docs     Prints the field reference of profiles in Markdown; with --write,
         replaces the reference between the markers in FILE (docs/profiles.md).`;

export async function runProfileCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('profile', HELP, () =>
    parseArgs({
      args: argv,
      options: { help: { type: 'boolean' }, write: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const [subcommand, file] = positionals;
  try {
    if (subcommand === 'schema') {
      process.stdout.write(`${JSON.stringify(profileJsonSchema(), null, 2)}\n`);
      return 0;
    }
    if (subcommand === 'check' && file) return await checkProfile(file);
    if (subcommand === 'migrate' && file) return await migrateProfile(file, values.write === true);
    if (subcommand === 'docs') return await writeReference(values.write === true ? file : undefined, values.write === true);
  } catch (error) {
    if (error instanceof ProfileError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT_CONFIG;
    }
    throw error;
  }
  process.stderr.write(`endocap profile: expected "check FILE", "migrate FILE", "schema" or "docs"\n\n${HELP}\n`);
  return 64;
}

async function checkProfile(file: string): Promise<number> {
  const { notes } = await loadProfileWithNotes(file);
  process.stdout.write(`${file}: valid\n`);
  for (const note of notes) process.stdout.write(`${describeNote(note)}\n`);
  return 0;
}

/** One migration note as printed by check and migrate: `file: path: change (format version 1 to 2)`. */
export function describeNote(note: MigrationNote): string {
  return `${note.file}: ${formatMigrationNote(note)}`;
}

/**
 * Formats a note for migrate. The formatVersion note of a load advises running
 * migrate, so migrate prints the version change instead of that advice.
 */
function describeMigrateNote(note: MigrationNote): string {
  if (note.path !== 'formatVersion') return describeNote(note);
  return `${note.file}: formatVersion: changed from ${note.fromVersion} to ${note.toVersion}`;
}

async function migrateProfile(file: string, write: boolean): Promise<number> {
  let text: string;
  try {
    text = await readProfileFile(file);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot be read (${(error as Error).message})`;
    throw new ProfileError(file, [{ path: '', message: `${reason}; pass the path of an existing profile` }]);
  }
  const migrated = migrateProfileText(text, file);
  for (const note of migrated.notes) process.stderr.write(`${describeMigrateNote(note)}\n`);
  if (!write) {
    process.stdout.write(migrated.text);
    return 0;
  }
  if (migrated.notes.length === 0) {
    process.stderr.write(`${file}: already in the current format version, not changed\n`);
    return 0;
  }
  await replaceFile(file, migrated.text);
  process.stderr.write(`${file}: updated\n`);
  return 0;
}

/**
 * Writes the new text beside the file, flushes it and renames it over the
 * file, then flushes the folder, so that an interrupted write or a power cut
 * leaves the old file or the new one whole. The new file gets the old one's
 * mode, owner and group (a profile is typically 0640 root:endocap). When the
 * owner cannot be kept (not running as root), the file is rewritten in place
 * and flushed instead.
 */
async function replaceFile(file: string, text: string): Promise<void> {
  const target = await realpath(file);
  const before = await stat(target);
  const temporary = `${target}.migrating`;
  await writeFileFlushed(temporary, text);
  try {
    await chmod(temporary, before.mode & 0o7777);
    await chown(temporary, before.uid, before.gid);
  } catch (error) {
    await rm(temporary, { force: true });
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
    await writeFileFlushed(target, text);
    return;
  }
  await rename(temporary, target);
  await syncDirectory(path.dirname(target));
}

async function writeReference(file: string | undefined, write: boolean): Promise<number> {
  const reference = renderProfileReference();
  if (!write) {
    process.stdout.write(reference);
    return 0;
  }
  if (!file) {
    process.stderr.write(`endocap profile docs: --write needs a FILE, such as docs/profiles.md\n\n${HELP}\n`);
    return 64;
  }
  const updated = replaceReference(await readFile(file, 'utf8'), reference);
  if (updated === undefined) {
    process.stderr.write(`endocap profile docs: ${file} lacks the lines\n${DOCS_BEGIN}\n${DOCS_END}\nbetween which the reference goes; add them\n`);
    return 1;
  }
  await writeFile(file, updated);
  return 0;
}
