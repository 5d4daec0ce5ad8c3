import { execFileSync } from 'node:child_process';
import { symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { loadProfile, loadProfileWithNotes, parseProfile, ProfileError } from '../../src/profile/load-profile.js';

/** A base with every required section but the station's own names. */
const SITE_BASE = `formatVersion: 2
station:
  institutionName: Base Hospital
  departmentName: Endoscopy
  uidRoot: 1.2.826.0.1.3680043.10.999
video:
  source:
    kind: simulator
  ringFrames: 6
footswitch:
  kind: serial
  path: /dev/ttyUSB0
  protocol: { kind: bytes, down: [49], up: [48] }
destinations:
  - { kind: dicom, name: pacs, host: 127.0.0.1, port: 11112, calledAeTitle: PACS }
  - { kind: dicom, name: archive, host: 127.0.0.1, port: 11113, calledAeTitle: ARCHIVE }
image:
  masks:
    - { x: 0, y: 0, width: 100, height: 100 }
    - { x: 200, y: 0, width: 100, height: 100 }
mqtt:
  url: mqtt://127.0.0.1:1883
worklist:
  host: 127.0.0.1
  port: 11114
  calledAeTitle: RIS
  modality: ES
spool:
  directory: spool
stateDirectory: state
`;

const ROOM = `formatVersion: 2
extends: base.yaml
station:
  aeTitle: ROOM1
  stationName: ROOM-1
`;

/** Reads the error a profile load throws, so that its lines can be compared. */
async function loadError(file: string): Promise<ProfileError> {
  const error = await loadProfile(file).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof ProfileError)) throw new Error(`expected a ProfileError, got ${String(error)}`);
  return error;
}

t.test('extends merges mappings key by key', async (t) => {
  const directory = t.testdir({ 'base.yaml': SITE_BASE, 'room.yaml': `${ROOM}video:\n  ringFrames: 10\n` });
  const profile = await loadProfile(path.join(directory, 'room.yaml'));
  t.equal(profile.station.aeTitle, 'ROOM1', 'child value');
  t.equal(profile.station.institutionName, 'Base Hospital', 'base value beside it');
  t.equal(profile.video.ringFrames, 10, 'child overrides base scalar');
  t.equal(profile.video.source.kind, 'simulator', 'base value in the same mapping');
  t.equal(profile.footswitch.kind, 'serial');
});

t.test('extends replaces lists whole', async (t) => {
  const child = `${ROOM}destinations:\n  - { kind: dicom, name: other, host: 127.0.0.1, port: 104, calledAeTitle: OTHER }\nimage:\n  masks: []\n`;
  const directory = t.testdir({ 'base.yaml': SITE_BASE, 'room.yaml': child });
  const profile = await loadProfile(path.join(directory, 'room.yaml'));
  t.same(profile.destinations.map((destination) => destination.name), ['other']);
  t.same(profile.image.masks, []);
});

t.test('extends null removes base value', async (t) => {
  const child = `${ROOM}mqtt: null\nvideo:\n  ringFrames: null\n`;
  const directory = t.testdir({ 'base.yaml': SITE_BASE, 'room.yaml': child });
  const profile = await loadProfile(path.join(directory, 'room.yaml'));
  t.equal(profile.mqtt, undefined, 'optional section removed');
  t.equal(profile.video.ringFrames, 4, 'field back to its default');
});

t.test('extends keeps null where null is a value', async (t) => {
  const directory = t.testdir({ 'base.yaml': SITE_BASE, 'room.yaml': `${ROOM}worklist:\n  modality: null\n` });
  const profile = await loadProfile(path.join(directory, 'room.yaml'));
  t.equal(profile.worklist?.modality, null, 'null matches every modality');
  t.equal(profile.worklist?.calledAeTitle, 'RIS');
});

t.test('extends replaces mapping of another kind', async (t) => {
  const directory = t.testdir({ 'base.yaml': SITE_BASE, 'room.yaml': `${ROOM}footswitch:\n  kind: keyboard\n` });
  const profile = await loadProfile(path.join(directory, 'room.yaml'));
  t.same(profile.footswitch, { kind: 'keyboard', gestures: { short: 'still', long: 'none', double: 'none' } });
});

t.test('extends follows a chain', async (t) => {
  const directory = t.testdir({
    'site.yaml': SITE_BASE,
    bases: { 'card.yaml': 'formatVersion: 2\nextends: ../site.yaml\nvideo:\n  source:\n    kind: lavfi\n    url: testsrc2\n' },
    'room.yaml': `${ROOM.replace('base.yaml', 'bases/card.yaml')}video:\n  ringFrames: 2\n`,
  });
  const loaded = await loadProfileWithNotes(path.join(directory, 'room.yaml'));
  t.same(loaded.files, [path.join(directory, 'site.yaml'), path.join(directory, 'bases/card.yaml'), path.join(directory, 'room.yaml')]);
  t.equal(loaded.profile.video.source.url, 'testsrc2', 'from the middle file');
  t.equal(loaded.profile.video.ringFrames, 2, 'from the profile');
  t.equal(loaded.profile.station.uidRoot, '1.2.826.0.1.3680043.10.999', 'from the deepest base');
});

t.test('extends reports a cycle', async (t) => {
  const directory = t.testdir({
    'a.yaml': 'formatVersion: 2\nextends: b.yaml\n',
    'b.yaml': 'formatVersion: 2\nextends: a.yaml\n',
  });
  const a = path.join(directory, 'a.yaml');
  const b = path.join(directory, 'b.yaml');
  const error = await loadError(a);
  t.equal(error.message, `${b}: extends: cycle of bases: ${a} extends ${b} extends ${a}; remove one of these extends (base of ${a})`);
});

t.test('extends reports itself as a cycle', async (t) => {
  const directory = t.testdir({ 'a.yaml': 'formatVersion: 2\nextends: a.yaml\n' });
  const a = path.join(directory, 'a.yaml');
  const error = await loadError(a);
  t.equal(error.message, `${a}: extends: cycle of bases: ${a} extends ${a}; remove one of these extends`);
});

t.test('extends sees a cycle through a link', async (t) => {
  const directory = t.testdir({ 'a.yaml': 'formatVersion: 2\nextends: link.yaml\n' });
  await symlink(path.join(directory, 'a.yaml'), path.join(directory, 'link.yaml'));
  const error = await loadError(path.join(directory, 'a.yaml'));
  t.match(error.message, /extends: cycle of bases: .*a\.yaml extends .*link\.yaml/);
});

t.test('extends reports missing base', async (t) => {
  const directory = t.testdir({ 'room.yaml': ROOM.replace('base.yaml', 'bases/site.yaml') });
  const room = path.join(directory, 'room.yaml');
  const error = await loadError(room);
  t.equal(error.message, `${room}: extends: base profile ${path.join(directory, 'bases/site.yaml')} not found; give its path relative to the folder of ${room}`);
});

t.test('extends rejects a value that is not a file name', async (t) => {
  const directory = t.testdir({ 'room.yaml': 'formatVersion: 2\nextends: [base.yaml]\n' });
  const room = path.join(directory, 'room.yaml');
  const error = await loadError(room);
  t.equal(error.message, `${room}: extends: expected the file name of a base profile, such as base.yaml, got ["base.yaml"]`);
});

t.test('extends names the base of a YAML error', async (t) => {
  const directory = t.testdir({ 'base.yaml': 'formatVersion: 2\nstation:\n  a: 1\n   b: 2\n', 'room.yaml': ROOM });
  const error = await loadError(path.join(directory, 'room.yaml'));
  t.match(error.message, new RegExp(`^${path.join(directory, 'base.yaml')}: \\(top level\\): not valid YAML or JSON: .*\\(base of ${path.join(directory, 'room.yaml')}\\)$`));
});

t.test('extends migrates a version 1 base', async (t) => {
  const base = SITE_BASE.replace('formatVersion: 2', 'formatVersion: 1').replace(/kind: dicom, /g, '');
  const directory = t.testdir({ 'base.yaml': base, 'room.yaml': ROOM });
  const loaded = await loadProfileWithNotes(path.join(directory, 'room.yaml'));
  t.same(
    loaded.profile.destinations.map((destination) => destination.kind),
    ['dicom', 'dicom'],
  );
  const baseFile = path.join(directory, 'base.yaml');
  t.same(
    loaded.notes.map((note) => [note.file, note.path]),
    [
      [baseFile, 'formatVersion'],
      [baseFile, 'destinations.0.kind'],
      [baseFile, 'destinations.1.kind'],
    ],
    'notes name the base file',
  );
});

t.test('extends names the file of each problem', async (t) => {
  const base = SITE_BASE.replace('uidRoot: 1.2.826.0.1.3680043.10.999', 'uidRoot: 1.2.03').replace(/footswitch:\n(  .*\n)+/, '');
  const child = `${ROOM}video:\n  ringFrames: 500\nstill:\n  colour: red\n`;
  const directory = t.testdir({ 'base.yaml': base, 'room.yaml': child });
  const room = path.join(directory, 'room.yaml');
  const baseFile = path.join(directory, 'base.yaml');
  const error = await loadError(room);
  t.same(error.message.split('\n'), [
    `${baseFile}: station.uidRoot: expected UID root of numeric components without leading zeros, such as 1.2.826.0.1.3680043.10.999, got "1.2.03" (base of ${room})`,
    `${room}: video.ringFrames: expected a number at most 120, got 500`,
    `${room}: footswitch: missing required value, expected object (merged with ${baseFile})`,
    `${room}: still: unknown key "colour"; remove it or check the spelling`,
  ]);
});

t.test('extends resolves paths from the file that sets them', async (t) => {
  const base = `${SITE_BASE}destinations:\n  - kind: dicom\n    name: pacs\n    host: 127.0.0.1\n    port: 11112\n    calledAeTitle: PACS\n    tls: { caFile: certs/ca.pem }\n`.replace(
    /destinations:\n  - \{ kind: dicom, name: pacs.*\n  - \{.*\n/,
    '',
  );
  const directory = t.testdir({ site: { 'base.yaml': base }, 'room.yaml': `${ROOM.replace('base.yaml', 'site/base.yaml')}stateDirectory: room-state\n` });
  const profile = await loadProfile(path.join(directory, 'room.yaml'));
  t.equal(profile.spool.directory, path.join(directory, 'site/spool'), 'set in the base: from the base folder');
  t.equal(profile.stateDirectory, path.join(directory, 'room-state'), 'set in the profile: from its folder');
  const pacs = profile.destinations[0];
  t.equal(pacs?.kind === 'dicom' ? pacs.tls?.caFile : undefined, path.join(directory, 'site/certs/ca.pem'));
});

t.test('parseProfile rejects extends', async (t) => {
  t.throws(() => parseProfile(ROOM, 'room.yaml'), /room\.yaml: extends: a base profile is read only when the profile is loaded from its file/);
});

t.test('extends reports a base that is a device, a FIFO, a folder, too large or not UTF-8, without reading it whole', async (t) => {
  const directory = t.testdir({
    'device.yaml': 'formatVersion: 2\nextends: /dev/zero\n',
    'fifo.yaml': 'formatVersion: 2\nextends: base.fifo\n',
    'folder.yaml': 'formatVersion: 2\nextends: bases\n',
    'large.yaml': 'formatVersion: 2\nextends: large-base.yaml\n',
    'latin1.yaml': 'formatVersion: 2\nextends: latin1-base.yaml\n',
    'large-base.yaml': `formatVersion: 2\n# ${'x'.repeat(2 * 1024 * 1024)}\n`,
    bases: {},
  });
  await writeFile(path.join(directory, 'latin1-base.yaml'), Buffer.from('formatVersion: 2\nstation:\n  institutionName: "Universit\xe4tsklinik"\n', 'latin1'));
  // A FIFO with no writer: opening it for reading the usual way waits for ever.
  execFileSync('mkfifo', [path.join(directory, 'base.fifo')]);
  const cases: Array<[string, RegExp]> = [
    ['device.yaml', /: extends: base profile \/dev\/zero cannot be read \(not a regular file but a device, FIFO or socket\)/],
    ['fifo.yaml', /: extends: base profile .*base\.fifo cannot be read \(not a regular file but a device, FIFO or socket\)/],
    ['folder.yaml', /: extends: base profile .*bases cannot be read \(not a regular file but a directory\)/],
    ['large.yaml', /: extends: base profile .*large-base\.yaml cannot be read \(\d+ bytes, more than the 1048576 a profile may have\)/],
    ['latin1.yaml', /: extends: base profile .*latin1-base\.yaml cannot be read \(not UTF-8 text; save the file as UTF-8\)/],
  ];
  for (const [file, expected] of cases) {
    const error = await loadProfile(path.join(directory, file)).catch((caught: unknown) => caught);
    t.type(error, ProfileError, file);
    t.match((error as Error).message, expected, file);
  }
});
