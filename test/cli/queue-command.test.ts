import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ControlClient } from '../../src/cli/control-client.js';
import { readObjectMetadata } from '../../src/dicom/object-metadata.js';
import { createLogger } from '../../src/log.js';
import { Spool } from '../../src/spool/spool.js';
import type { SpoolEntry } from '../../src/spool/types.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startStorescp } from '../pacs/peers.js';
import { UID_ROOT, makeObject, plain } from '../spool/fixtures/objects.js';

const root = path.resolve(import.meta.dirname, '../..');
type Teardown = { teardown: (fn: () => Promise<void> | void) => void };

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (`dist/cli/main.js queue ...`), as an operator would. */
function queue(...args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(root, 'dist/cli/main.js'), 'queue', ...args], { cwd: root }, (error, stdout, stderr) => {
      let code = 0;
      if (error !== null) code = typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

interface Fixture {
  directory: string;
  profile: string;
  spoolDirectory: string;
  /** Objects spooled before the test, the first one set aside by `pacs`. */
  entries: SpoolEntry[];
  receivedDirectory: string;
  dicomPort: number;
}

/**
 * Writes a profile (lavfi video, no footswitch, destination `pacs` on a free
 * port) and fills its spool with three objects built by the VL Endoscopic
 * Image builder. The first is set aside by `pacs` with status 0xC000.
 */
async function prepare(t: Teardown, retentionHours = 0): Promise<Fixture> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-queue-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const dicomPort = await freePort();
  const profile = await writeTestProfile({
    directory,
    destinations: [{ name: 'pacs', host: '127.0.0.1', port: dicomPort, calledAeTitle: 'STORESCP' }],
    spool: { retentionHours },
  });
  const spoolDirectory = path.join(directory, 'spool');
  const spool = new Spool({ directory: spoolDirectory, destinations: plain('pacs'), log: createLogger('silent'), retentionHours });
  await spool.open();
  const entries: SpoolEntry[] = [];
  for (let i = 1; i <= 3; i += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.70.${i}`);
    entries.push(await spool.add(part10, meta));
  }
  const first = entries[0];
  if (first === undefined) throw new Error('nothing spooled');
  await spool.markSetAside(first.id, 'pacs', 'peer rejected the object: status 0xC000', 0xc000);
  await spool.close();
  const receivedDirectory = path.join(directory, 'received');
  await mkdir(receivedDirectory);
  return { directory, profile, spoolDirectory, entries, receivedDirectory, dicomPort };
}

/** SOP Instance UIDs of the files storescp wrote. */
async function receivedUids(folder: string): Promise<string[]> {
  const uids: string[] = [];
  for (const name of await readdir(folder)) uids.push(readObjectMetadata(await readFile(path.join(folder, name))).sopInstanceUid);
  return uids.sort();
}

t.test('queue commands on a stopped daemon', async (t) => {
  const fixture = await prepare(t);
  const [setAside, second, third] = fixture.entries as [SpoolEntry, SpoolEntry, SpoolEntry];

  const listed = await queue('list', '--profile', fixture.profile);
  t.equal(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trim().split('\n');
  t.equal(lines.length, 3, 'one line per object');
  t.match(lines[0], new RegExp(`^${setAside.id}  ${setAside.queuedAt}  .* VL Endoscopic Image Storage  pacs: set-aside, 1 attempt, status 0xC000, "peer rejected the object: status 0xC000"$`));
  t.match(lines[1], new RegExp(`^${second.id} .*pacs: queued, 0 attempts$`));
  t.notMatch(listed.stdout, /Spool\^Test|SPOOLTEST/, 'no patient name or id');
  t.notOk(listed.stdout.includes(setAside.sopInstanceUid), 'no SOP Instance UID');

  const json = await queue('list', '--json', '--state', 'set-aside', '--profile', fixture.profile);
  t.equal(json.code, 0);
  const items = JSON.parse(json.stdout) as Array<{ id: string; bytes: number; sopClassName: string; deliveries: Record<string, { state: string; lastStatus?: number }> }>;
  t.same(items.map((item) => [item.id, item.bytes, item.deliveries.pacs?.state, item.deliveries.pacs?.lastStatus]), [[setAside.id, setAside.bytes, 'set-aside', 0xc000]]);

  const retried = await queue('retry', setAside.id, '--profile', fixture.profile);
  t.equal(retried.code, 0, retried.stderr);
  t.equal(retried.stdout, `${setAside.id}: queued again for pacs (was set-aside)\n`);
  t.equal((await queue('list', '--state', 'set-aside', '--profile', fixture.profile)).stdout, '', 'nothing set aside any more');

  const unknown = await queue('retry', '20990101T000000.000Z-000000', '--profile', fixture.profile);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /20990101T000000\.000Z-000000: no spooled object with id/);
  const queuedAlready = await queue('retry', third.id, '--profile', fixture.profile);
  t.equal(queuedAlready.code, 1, 'a queued object cannot be retried');
  t.match(queuedAlready.stderr, /no set-aside delivery/);

  const exportDirectory = path.join(fixture.directory, 'export');
  const exported = await queue('export', second.id, third.id, '--to', exportDirectory, '--profile', fixture.profile);
  t.equal(exported.code, 0, exported.stderr);
  for (const [entry, index] of [[second, 2], [third, 3]] as const) {
    const copy = await readFile(path.join(exportDirectory, `${entry.sopInstanceUid}.dcm`));
    t.ok(copy.equals(makeObject(`${UID_ROOT}.70.${index}`).part10), `${entry.id} exported byte for byte`);
    const state = JSON.parse(await readFile(path.join(exportDirectory, `${entry.sopInstanceUid}.json`), 'utf8')) as SpoolEntry;
    t.equal(state.id, entry.id, 'state exported beside it');
  }

  const notDicom = path.join(fixture.directory, 'notes.txt');
  await writeFile(notDicom, 'this is not DICOM');
  const fresh = makeObject(`${UID_ROOT}.70.9`);
  const freshFile = path.join(fixture.directory, 'fresh.dcm');
  await writeFile(freshFile, fresh.part10);
  const duplicate = path.join(exportDirectory, `${second.sopInstanceUid}.dcm`);
  const imported = await queue('import', notDicom, freshFile, duplicate, '--profile', fixture.profile);
  t.equal(imported.code, 1, 'an invalid file makes the command fail');
  t.match(imported.stderr, new RegExp(`${notDicom}: not imported: invalid DICOM Part 10 file: no "DICM" prefix`));
  t.match(imported.stdout, new RegExp(`${freshFile}: imported as \\S+`), 'the valid file is still imported');
  t.match(imported.stdout, new RegExp(`${duplicate}: already in the spool as ${second.id}, not added again`));
  const after = JSON.parse((await queue('list', '--json', '--profile', fixture.profile)).stdout) as Array<{ id: string }>;
  t.equal(after.length, 4, 'one object added');

  const allSetAside = await queue('retry', '--all-set-aside', '--profile', fixture.profile);
  t.equal(allSetAside.code, 0);
  t.match(allSetAside.stderr, /no set-aside deliveries/);
});

t.test('queue command usage and exit codes', async (t) => {
  const fixture = await prepare(t);
  for (const subcommand of ['list', 'retry', 'export', 'import']) {
    const help = await queue(subcommand, '--help');
    t.equal(help.code, 0, `${subcommand} --help`);
    t.match(help.stdout, new RegExp(`^Usage: endocap queue ${subcommand}`));
    t.match(help.stdout, /Exit codes: 0 success, 1 .*, 64 usage error, 78 invalid profile/s);
  }
  const cases: Array<[string[], number, RegExp]> = [
    [[], 64, /missing subcommand/],
    [['purge'], 64, /unknown subcommand "purge"/],
    [['list', '--state', 'lost', '--profile', fixture.profile], 64, /--state must be one of queued, sending, stored, committed, set-aside, got "lost"/],
    [['list', '--to', 'x', '--profile', fixture.profile], 64, /--to is not an option of "queue list"/],
    [['retry', '--profile', fixture.profile], 64, /missing object ids or --all-set-aside/],
    [['retry', 'x', '--all-set-aside', '--profile', fixture.profile], 64, /not both/],
    [['export', 'x', '--profile', fixture.profile], 64, /missing --to DIR/],
    [['import', '--profile', fixture.profile], 64, /missing files to import/],
    [['list', '--profile', path.join(fixture.directory, 'missing.yaml')], 78, /file not found/],
  ];
  for (const [args, code, message] of cases) {
    const result = await queue(...args);
    t.equal(result.code, code, `queue ${args.join(' ')} exits ${code}`);
    t.match(result.stderr, message);
  }
});

t.test('queue command rejects a spool held elsewhere', async (t) => {
  const fixture = await prepare(t);
  const spool = new Spool({ directory: fixture.spoolDirectory, destinations: plain('pacs'), log: createLogger('silent') });
  await spool.open();
  t.teardown(() => spool.close());
  const listed = await queue('list', '--profile', fixture.profile);
  t.equal(listed.code, 1);
  t.match(listed.stderr, new RegExp(`spool is in use by process ${process.pid}`));
});

t.test('queue commands through the running daemon', async (t) => {
  const fixture = await prepare(t, 24);
  const [setAside, second] = fixture.entries as [SpoolEntry, SpoolEntry, SpoolEntry];
  const storescp = await startStorescp({ port: fixture.dicomPort, aeTitle: 'STORESCP', outputDirectory: fixture.receivedDirectory, args: ['+xa'] });
  t.teardown(() => storescp.stop());
  const daemon = startDaemon(fixture.profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('control socket listening');
  await daemon.waitForLog('object stored', 2);
  const delivered = [fixture.entries[1], fixture.entries[2]].map((entry) => entry?.sopInstanceUid).sort();
  t.same(await receivedUids(fixture.receivedDirectory), delivered, 'queued objects delivered, the set-aside one not');

  const listed = await queue('list', '--profile', fixture.profile);
  t.equal(listed.code, 0, listed.stderr);
  t.match(listed.stdout, new RegExp(`${setAside.id} .*pacs: set-aside`));
  t.match(listed.stdout, new RegExp(`${second.id} .*pacs: stored, 1 attempt, status 0x0000`), 'delivered objects are kept for retention');
  t.ok(daemon.lines.some((line) => line.msg === 'control request received' && line.command === 'queue-list'), 'answered by the daemon');

  const retried = await queue('retry', setAside.id, '--profile', fixture.profile);
  t.equal(retried.code, 0, retried.stderr);
  await waitFor(async () => (await readdir(fixture.receivedDirectory)).length === 3, 20_000, 'storescp to receive the retried object');
  t.ok((await receivedUids(fixture.receivedDirectory)).includes(setAside.sopInstanceUid), 'the set-aside object reached storescp');

  const fresh = makeObject(`${UID_ROOT}.70.10`);
  const freshFile = path.join(fixture.directory, 'fresh.dcm');
  await writeFile(freshFile, fresh.part10);
  const notDicom = path.join(fixture.directory, 'notes.txt');
  await writeFile(notDicom, 'not DICOM either');
  const imported = await queue('import', freshFile, notDicom, '--profile', fixture.profile);
  t.equal(imported.code, 1);
  t.match(imported.stdout, /fresh\.dcm: imported as/);
  t.match(imported.stderr, /notes\.txt: not imported: invalid DICOM Part 10 file/);
  await waitFor(async () => (await readdir(fixture.receivedDirectory)).length === 4, 20_000, 'storescp to receive the imported object');

  const exportDirectory = path.join(fixture.directory, 'export');
  const exported = await queue('export', second.id, '--to', exportDirectory, '--profile', fixture.profile);
  t.equal(exported.code, 0, exported.stderr);
  t.ok((await readFile(path.join(exportDirectory, `${second.sopInstanceUid}.dcm`))).equals(makeObject(`${UID_ROOT}.70.2`).part10), 'exported through the daemon');

  const client = await ControlClient.connect(path.join(fixture.directory, 'state', 'control.sock'));
  if (client === undefined) throw new Error('daemon not listening');
  const status = await client.request({ command: 'status' });
  client.close();
  t.equal(status.boxId, 'test-box');
  t.equal(status.footswitch.kind, 'none');
  t.equal(status.video.signal, true);
  t.equal(status.spool.objects, 4);
  t.equal(status.spool.retained, 4, 'every object delivered and retained');
  t.same(status.senders.map((sender) => sender.destination), ['pacs']);
  t.same(status.spool.alarms, []);

  t.equal(await daemon.stop(), 0);
  await t.rejects(stat(path.join(fixture.directory, 'state', 'control.sock')), { code: 'ENOENT' }, 'socket removed at stop');
  await t.rejects(stat(path.join(fixture.spoolDirectory, 'spool.lock')), { code: 'ENOENT' }, 'spool lock released at stop');
});
