import { chmod, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/cli.js';
import { loadProfileWithNotes, parseProfile } from '../../src/profile/load-profile.js';
import { formatMigrationNote } from '../../src/profile/migrate.js';
import { migrateProfileText } from '../../src/profile/migrate-text.js';

const root = path.resolve(import.meta.dirname, '../..');
const fixtures = 'test/fixtures/profiles';
const version1 = `${fixtures}/version-1.yaml`;
const version2 = `${fixtures}/version-2.yaml`;

const expectedNotes = [
  `formatVersion: migrated in memory from 1 to 2; "endocap profile migrate ${version1} --write" updates the file (format version 1 to 2)`,
  'destinations.0.kind: added "kind: dicom": version 2 destinations name their protocol (dicom or stow-rs) (format version 1 to 2)',
  'destinations.1.kind: added "kind: dicom": version 2 destinations name their protocol (dicom or stow-rs) (format version 1 to 2)',
];

t.test('migration notes of version 1', async (t) => {
  const loaded = await loadProfileWithNotes(version1);
  t.same(loaded.notes.map(formatMigrationNote), expectedNotes);
  t.ok(loaded.notes.every((note) => note.file === version1), 'each note names the file');
});

t.test('migrated version 1 equals version 2', async (t) => {
  const migrated = await loadProfileWithNotes(version1);
  const current = await loadProfileWithNotes(version2);
  t.same(current.notes, [], 'a version 2 file needs no migration');
  t.same(migrated.profile, current.profile);
});

t.test('migrate text keeps comments', async (t) => {
  const text = await readFile(path.join(root, version1), 'utf8');
  const result = migrateProfileText(text, version1);
  t.equal(result.text, await readFile(path.join(root, version2), 'utf8'));
  t.match(result.text, /# The department PACS\.\n  - kind: dicom\n    name: pacs/, 'comment above the first destination kept');
  t.equal(result.notes.length, 3);
});

t.test('migrate text leaves current file unchanged', async (t) => {
  const text = await readFile(path.join(root, version2), 'utf8');
  const result = migrateProfileText(text, version2);
  t.equal(result.text, text);
  t.same(result.notes, []);
});

t.test('unknown future version rejected', async (t) => {
  const text = (await readFile(path.join(root, version2), 'utf8')).replace('formatVersion: 2', 'formatVersion: 3');
  t.throws(
    () => parseProfile(text, 'future.yaml'),
    { message: 'future.yaml: formatVersion: expected 2 (or an older version, migrated when loaded), got 3; a newer endocap wrote this profile, so update endocap' },
  );
});

t.test('missing version rejected', async (t) => {
  const text = (await readFile(path.join(root, version2), 'utf8')).replace('formatVersion: 2\n', '');
  t.throws(() => parseProfile(text, 'none.yaml'), { message: 'none.yaml: formatVersion: missing required value, expected 2 (or an older version, migrated when loaded)' });
});

t.test('bad version listed with other problems', async (t) => {
  const text = (await readFile(path.join(root, version2), 'utf8')).replace('formatVersion: 2', 'formatVersion: "two"').replace('port: 11112', 'port: 0');
  t.throws(() => parseProfile(text, 'two.yaml'), {
    message: [
      'two.yaml: formatVersion: expected 2 (or an older version, migrated when loaded), got "two"',
      'two.yaml: destinations.0.port: expected a number at least 1, got 0',
    ].join('\n'),
  });
});

t.test('profile check prints migration notes', async (t) => {
  const result = await runCli('profile', 'check', version1);
  t.equal(result.code, 0, result.stderr);
  t.equal(result.stdout, [`${version1}: valid`, ...expectedNotes.map((note) => `${version1}: ${note}`), ''].join('\n'));
});

t.test('profile check rejects future version', async (t) => {
  const directory = t.testdir({ 'future.yaml': (await readFile(path.join(root, version2), 'utf8')).replace('formatVersion: 2', 'formatVersion: 3') });
  const file = path.join(directory, 'future.yaml');
  const result = await runCli('profile', 'check', file);
  t.equal(result.code, 78);
  t.equal(result.stderr, `${file}: formatVersion: expected 2 (or an older version, migrated when loaded), got 3; a newer endocap wrote this profile, so update endocap\n`);
});

t.test('profile migrate writes the file', async (t) => {
  const directory = t.testdir({ 'profile.yaml': await readFile(path.join(root, version1), 'utf8') });
  const file = path.join(directory, 'profile.yaml');
  await chmod(file, 0o640);
  const first = await runCli('profile', 'migrate', file, '--write');
  t.equal(first.code, 0, first.stderr);
  t.equal(first.stdout, '', 'nothing on stdout with --write');
  t.match(first.stderr, `${file}: destinations.1.kind: added "kind: dicom"`);
  t.equal(first.stderr.split('\n')[0], `${file}: formatVersion: changed from 1 to 2`, 'no advice to run migrate again');
  t.notMatch(first.stderr, 'migrated in memory');
  t.equal(await readFile(file, 'utf8'), await readFile(path.join(root, version2), 'utf8'));
  t.equal((await stat(file)).mode & 0o777, 0o640, 'file mode kept');
  t.same(await readdir(directory), ['profile.yaml'], 'no temporary file left');

  const second = await runCli('profile', 'migrate', file, '--write');
  t.equal(second.code, 0);
  t.equal(second.stderr, `${file}: already in the current format version, not changed\n`);
});

t.test('profile migrate prints without --write', async (t) => {
  const directory = t.testdir({ 'profile.yaml': await readFile(path.join(root, version1), 'utf8') });
  const file = path.join(directory, 'profile.yaml');
  const result = await runCli('profile', 'migrate', file);
  t.equal(result.code, 0, result.stderr);
  t.equal(result.stdout, await readFile(path.join(root, version2), 'utf8'));
  t.equal(await readFile(file, 'utf8'), await readFile(path.join(root, version1), 'utf8'), 'file left as it was');
});

t.test('profile migrate rejects unparsable file', async (t) => {
  const directory = t.testdir({ 'profile.yaml': 'formatVersion: 1\nstation:\n  a: 1\n   b: 2\n' });
  const file = path.join(directory, 'profile.yaml');
  const result = await runCli('profile', 'migrate', file, '--write');
  t.equal(result.code, 78);
  t.match(result.stderr, `${file}: (top level): not valid YAML or JSON:`);
});

t.test('profile rejects an unknown option', async (t) => {
  const result = await runCli('profile', 'check', version1, '--bogus');
  t.equal(result.code, 64, 'a usage error, not a crash');
  t.equal(result.stderr.split('\n')[0], 'endocap profile: unknown option "--bogus"');
});
