import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parse, stringify } from 'yaml';
import { startDaemon } from '../helpers/daemon-process.js';
import { freePort } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';

// Spawns dist/cli/main.js: run `npm run build` first.
t.test('daemon logs migration notes once', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-migration-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  // Nothing listens on this port: the destination is only there to be migrated.
  const port = await freePort();
  const file = await writeTestProfile({ directory, destinations: [{ name: 'pacs', host: '127.0.0.1', port, calledAeTitle: 'PACS' }] });

  // Rewritten as format version 1: no kind on destinations.
  const profile = parse(await readFile(file, 'utf8')) as { formatVersion: number; destinations: Array<Record<string, unknown>> };
  profile.formatVersion = 1;
  for (const destination of profile.destinations) delete destination['kind'];
  await writeFile(file, stringify(profile));

  const daemon = startDaemon(file);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('daemon started');

  const notes = daemon.lines.filter((line) => line.msg === 'profile migrated from an older format version');
  t.same(
    notes.map((line) => [line.level, line['profileFile'], line['path'], line['fromVersion'], line['toVersion']]),
    [
      ['warn', file, 'formatVersion', 1, 2],
      ['warn', file, 'destinations.0.kind', 1, 2],
    ],
    'one warn line per note, with the profile file',
  );
  t.match(notes[1]?.['change'], /^added "kind: dicom"/);
  t.equal(await daemon.stop(), 0);
});

