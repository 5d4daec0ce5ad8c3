import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadProfile, loadProfileWithNotes, parseProfile, ProfileError } from '../../src/profile/load-profile.js';
import { profileJsonSchema } from '../../src/cli/profile-command.js';

const root = path.resolve(import.meta.dirname, '../..');
const cli = path.join(root, 'dist/cli/main.js');
const fixtures = 'test/fixtures/profiles';

function checkProfile(file: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [cli, 'profile', 'check', file], { cwd: root, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

for (const name of ['bad-many', 'bad-footswitch', 'bad-yaml', 'bad-image', 'bad-extends', 'bad-in-base', 'bad-version']) {
  t.test(`profile check lists every problem in ${name}`, async (t) => {
    const result = checkProfile(`${fixtures}/${name}.yaml`);
    const expected = readFileSync(path.join(root, fixtures, `${name}.expected`), 'utf8');
    t.equal(result.status, 78, 'exits with EX_CONFIG');
    t.equal(result.stderr, expected);
  });
}

t.test('profile check accepts shipped profiles', async (t) => {
  const shipped = readdirSync(path.join(root, 'hw-profiles')).filter((name) => name.endsWith('.yaml'));
  t.ok(shipped.length >= 6, `profiles found: ${shipped.join(', ')}`);
  for (const file of shipped.map((name) => `hw-profiles/${name}`)) {
    const result = checkProfile(file);
    t.equal(result.status, 0, `${file} is valid: ${result.stderr}`);
  }
});

t.test('shipped profiles are current and share a base', async (t) => {
  const shipped = readdirSync(path.join(root, 'hw-profiles')).filter((name) => name.endsWith('.yaml'));
  let extending = 0;
  for (const name of shipped) {
    const loaded = await loadProfileWithNotes(path.join(root, 'hw-profiles', name));
    t.same(loaded.notes, [], `${name} needs no migration`);
    if (loaded.files.includes(path.join(root, 'hw-profiles/base/site-defaults.yaml'))) extending += 1;
  }
  t.ok(extending >= 2, `${extending} shipped profiles extend base/site-defaults.yaml`);
});

t.test('profile check reports missing file', async (t) => {
  const result = checkProfile('no-such-profile.yaml');
  t.equal(result.status, 78);
  t.match(result.stderr, /no-such-profile\.yaml: \(top level\): file not found/);
});

t.test('run exits 78 on invalid profile', async (t) => {
  const result = spawnSync(process.execPath, [cli, 'run', '--profile', `${fixtures}/bad-many.yaml`], { cwd: root, encoding: 'utf8', timeout: 20_000 });
  t.equal(result.status, 78);
  t.match(result.stderr, /station\.aeTitle: expected AE title of 1 to 16/);
});

t.test('profile problems carry paths', async (t) => {
  const error = await loadProfile(path.join(root, fixtures, 'bad-many.yaml')).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  t.ok(error instanceof ProfileError);
  const paths = (error as ProfileError).problems.map((problem) => problem.path);
  t.same(paths, ['station.aeTitle', 'station.uidRoot', 'station', 'video.source.kind', 'video.ringFrames', 'footswitch.path', 'destinations.0.port']);
});

t.test('profile fills defaults and resolves folders', async (t) => {
  const profile = parseProfile(readFileSync(path.join(root, 'hw-profiles/simulator.yaml'), 'utf8'), path.join(root, 'hw-profiles/simulator.yaml'));
  t.equal(profile.spool.directory, path.join(root, 'var/simulator/spool'));
  t.equal(profile.destinations[0]?.retry.initialMs, 1_000);
  t.equal(profile.still.jpegQuality, 90);
});

t.test('profile rejects UID root too long for 64-character UIDs', async (t) => {
  const text = readFileSync(path.join(root, 'hw-profiles/simulator.yaml'), 'utf8').replace('1.2.826.0.1.3680043.10.1437', `1.2.${'9'.repeat(45)}`);
  t.throws(() => parseProfile(text, 'long-root.yaml'), /station\.uidRoot: expected UID root of at most 40 characters/);
});

t.test('JSON Schema file matches the schema', async (t) => {
  const committed = JSON.parse(readFileSync(path.join(root, 'hw-profiles/profile.schema.json'), 'utf8')) as unknown;
  t.same(committed, profileJsonSchema(), 'regenerate with: npm run schema');
});

t.test('profile rejects text removal without masks', async (t) => {
  const text = `${readFileSync(path.join(root, 'hw-profiles/simulator.yaml'), 'utf8')}image:\n  textRemovedByMasks: true\n`;
  t.throws(() => parseProfile(text, 'no-masks.yaml'), /image\.textRemovedByMasks: expected false, or a crop or at least one mask/);
});

t.test('profile fills clip and image defaults', async (t) => {
  const text = readFileSync(path.join(root, 'test/fixtures/profiles/bad-image.yaml'), 'utf8')
    .replace('short: movie', 'short: clip')
    .replace(/still:[\s\S]*?spool:/, 'spool:');
  const profile = parseProfile(text, 'defaults.yaml');
  t.equal(profile.clip.preRecordSeconds, 5);
  t.equal(profile.clip.encoder.codec, 'libx264');
  t.equal(profile.clip.encoder.crf, 23);
  t.equal(profile.clip.anatomicRegion.codeValue, '38266002');
  t.same(profile.image, { masks: [], textRemovedByMasks: false });
  t.equal(profile.still.selection, 'on-screen');
});

t.test('a partly given backoff block keeps the defaults of its own use', async (t) => {
  const document = parseYaml(readFileSync(path.join(root, 'hw-profiles/simulator.yaml'), 'utf8')) as Record<string, any>;
  document['video'].reopen = { initialMs: 200 };
  document['mqtt'] = { url: 'mqtt://127.0.0.1:1883', reconnect: { multiplier: 3 } };
  const profile = parseProfile(stringifyYaml(document), path.join(root, 'hw-profiles/partial-backoff.yaml'));
  t.same(profile.video.reopen, { initialMs: 200, maxMs: 10_000, multiplier: 2 }, 'video.reopen keeps its 10 s cap');
  t.same(profile.mqtt?.reconnect, { initialMs: 1_000, maxMs: 30_000, multiplier: 3 }, 'mqtt.reconnect keeps its 30 s cap');
});
