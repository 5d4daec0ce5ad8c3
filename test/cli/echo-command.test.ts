import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parse, stringify } from 'yaml';
import { runCli } from '../helpers/cli.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { freePort } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startSilentServer, startStorescp } from '../pacs/peers.js';

t.test('echo reports each peer with its reason', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-echo-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const storescp = await startStorescp({ port: await freePort(), aeTitle: 'STORESCP', outputDirectory: directory });
  t.teardown(() => storescp.stop());
  const orthanc = await startOrthanc({ aeTitle: 'ORTHANC', checkCalledAet: true });
  t.teardown(() => orthanc.stop());
  const closedPort = await freePort();
  const silent = await startSilentServer();
  t.teardown(() => silent.stop());

  const file = await writeTestProfile({
    directory,
    destinations: [
      { name: 'good', host: '127.0.0.1', port: storescp.port, calledAeTitle: 'STORESCP' },
      { name: 'closed', host: '127.0.0.1', port: closedPort, calledAeTitle: 'STORESCP' },
      { name: 'wrong-aet', host: '127.0.0.1', port: orthanc.dicomPort, calledAeTitle: 'NOT_ORTHANC' },
      { name: 'silent', host: '127.0.0.1', port: silent.port, calledAeTitle: 'SILENT' },
    ],
  });
  const profile = parse(await readFile(file, 'utf8')) as { destinations: Array<Record<string, unknown>>; worklist?: unknown };
  const silentDestination = profile.destinations[3];
  if (silentDestination !== undefined) silentDestination.associationTimeoutMs = 300;
  profile.worklist = { host: '127.0.0.1', port: storescp.port, calledAeTitle: 'STORESCP' };
  await writeFile(file, stringify(profile));

  const result = await runCli('echo', '--profile', file);
  t.equal(result.code, 1, 'a failed peer makes the exit code 1');
  const lines = result.stdout.trim().split('\n');
  t.equal(lines.length, 5, result.stdout);
  t.match(lines[0], /^destination good \(STORESCP@127\.0\.0\.1:\d+\): ok in \d+ ms$/);
  t.match(lines[1], /^destination closed .*: FAILED in \d+ ms: connection refused/);
  t.match(lines[2], /^destination wrong-aet .*: FAILED in \d+ ms: association rejected.*called AE title not recognized/);
  t.match(lines[3], /^destination silent .*: FAILED in \d+ ms: .*(timed out|timeout|within)/);
  t.match(lines[4], /^worklist \(STORESCP@127\.0\.0\.1:\d+\): ok in \d+ ms$/);
});

t.test('echo exits 0 when every peer answers', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-echo-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const storescp = await startStorescp({ port: await freePort(), aeTitle: 'STORESCP', outputDirectory: directory });
  t.teardown(() => storescp.stop());
  const file = await writeTestProfile({ directory, destinations: [{ name: 'good', host: '127.0.0.1', port: storescp.port, calledAeTitle: 'STORESCP' }] });
  const result = await runCli('echo', '--profile', file);
  t.equal(result.code, 0, result.stderr);
  t.match(result.stdout, /destination good .*: ok in \d+ ms/);
});

t.test('echo help and bad arguments', async (t) => {
  const help = await runCli('echo', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /--profile FILE/);
  t.match(help.stdout, /64 usage error, 78 invalid profile/);
  t.equal((await runCli('echo', '--bogus')).code, 64);
  const missing = await runCli('echo', '--profile', '/nonexistent/profile.yaml');
  t.equal(missing.code, 78, missing.stderr);
});
