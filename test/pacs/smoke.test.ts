import t from 'tap';
import { mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { storeObjects, echo } from '../../src/pacs/store-scu.js';
import { freePort, startStorescp } from './peers.js';
import { makeJpegObject, storeObjectFromFile, memoryLogger, destinationFor } from './fixtures.js';

t.test('smoke', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pacs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = join(dir, 'out');
  await (await import('node:fs/promises')).mkdir(out);
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: out, args: ['+xa', '+B'] });
  t.teardown(() => peer.stop());
  const file = await makeJpegObject(dir, 'a');
  const object = await storeObjectFromFile('obj-1', file);
  const { log, lines } = memoryLogger();
  const results = await storeObjects({ destination: destinationFor(port), callingAeTitle: 'ENDOCAP', objects: [object], log });
  console.log(results, await readdir(out));
  console.log(await echo({ destination: destinationFor(port), callingAeTitle: 'ENDOCAP', log }));
  console.log(lines().slice(0, 3000));
  console.log(peer.output());
});
