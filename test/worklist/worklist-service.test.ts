import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../src/errors.js';
import { WorklistService } from '../../src/worklist/worklist-service.js';
import { waitFor } from '../helpers/ports.js';
import { asciiEntry, memoryLogger, worklistConfig } from './fixtures.js';
import { startWlmscpfs, writeWorklistFiles } from './peers.js';

t.test('worklist service keeps the last good result', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-wl-service-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  await writeWorklistFiles(path.join(directory, 'worklists', 'WLMSCP'), [asciiEntry('ACC1'), asciiEntry('ACC2'), asciiEntry('ACC3', { stationAeTitle: 'OTHER' })]);
  const server = await startWlmscpfs({ directory: path.join(directory, 'worklists'), aeTitle: 'WLMSCP' });
  t.teardown(() => server.stop());
  const stateDirectory = path.join(directory, 'state');
  const { log, lines } = memoryLogger();
  const config = worklistConfig(server.port, { refreshIntervalMs: 60_000 });

  const service = new WorklistService({ config, stationAeTitle: 'ENDOCAP_TEST', stateDirectory, log });
  const updates: number[] = [];
  const failures: string[] = [];
  service.on('worklistUpdated', ({ entries }) => updates.push(entries));
  service.on('worklistFailed', ({ code }) => failures.push(code));
  t.equal(service.cacheAgeMs(), undefined, 'no age before the first query');
  await service.start();
  await waitFor(() => updates.length === 1, 10_000, 'the first query at start');
  t.same(service.entries.map((entry) => entry.accessionNumber).sort(), ['ACC1', 'ACC2'], 'this station only');
  t.ok((service.cacheAgeMs() ?? -1) >= 0);
  const cacheFile = path.join(stateDirectory, 'worklist-cache.json');
  t.equal(((await stat(cacheFile)).mode & 0o777).toString(8), '640', 'the cache is not world-readable');

  await server.stop();
  await t.rejects(service.refresh(), { code: ErrorCodes.WORKLIST_QUERY_FAILED });
  t.same(failures, [ErrorCodes.WORKLIST_QUERY_FAILED]);
  t.equal(service.entries.length, 2, 'the entries stay after a failed query');
  t.match(service.status(), { entries: 2, consecutiveFailures: 0, lastErrorCode: ErrorCodes.WORKLIST_QUERY_FAILED });
  await service.stop();

  // A restart while the server is down starts from the cache.
  const restarted = new WorklistService({ config, stationAeTitle: 'ENDOCAP_TEST', stateDirectory, log, clock: () => Date.now() + 600_000 });
  const restartFailures: string[] = [];
  restarted.on('worklistFailed', ({ code }) => restartFailures.push(code));
  await restarted.start();
  t.teardown(() => restarted.stop());
  t.equal(restarted.entries.length, 2, 'cached entries at start');
  t.ok((restarted.cacheAgeMs() ?? 0) >= 600_000, 'the age counts from the query that made the cache');
  await waitFor(() => restartFailures.length >= 1, 10_000, 'a failed query at start');
  t.equal(restarted.entries.length, 2);

  const another = new WorklistService({ config: worklistConfig(server.port + 1), stationAeTitle: 'ENDOCAP_TEST', stateDirectory, log });
  await another.start();
  await another.stop();
  t.equal(another.entries.length, 0, 'a cache of another server is not used');

  await writeFile(cacheFile, '{"formatVersion":1,"fetchedAt":"x", "entries": [{"patientName":"Leak^Me"');
  const corrupt = new WorklistService({ config, stationAeTitle: 'ENDOCAP_TEST', stateDirectory, log });
  await corrupt.start();
  await corrupt.stop();
  t.equal(corrupt.entries.length, 0, 'a corrupt cache is ignored');
  t.match(lines(), /worklist cache unreadable, ignored/);
  t.notMatch(lines(), /Leak\^Me|PLAIN\^PATIENT|PID-ACC/, 'no patient data in the log');
  t.match(await readFile(cacheFile, 'utf8'), /Leak/, 'the corrupt file is left for inspection');
});
