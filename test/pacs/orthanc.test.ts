import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { echo, storeObjects, type StoreObject } from '../../src/pacs/store-scu.js';
import { startOrthanc, type OrthancPeer } from '../helpers/orthanc.js';
import { destinationFor, makeJpegObject, memoryLogger, patientMarkers, pixelFragments, storeObjectFromFile } from './fixtures.js';

const callingAeTitle = 'ENDOCAP';

let workDirectory = '';
let orthanc: OrthancPeer | undefined;
let objects: StoreObject[] = [];
let objectPaths: string[] = [];

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-orthanc-objects-'));
  // DicomCheckCalledAet is on, so a wrong called AE title is rejected.
  orthanc = await startOrthanc({ checkCalledAet: true });
  objectPaths = [await makeJpegObject(workDirectory, 'first'), await makeJpegObject(workDirectory, 'second', { width: 640, height: 480 })];
  objects = await Promise.all(objectPaths.map((path, index) => storeObjectFromFile(`obj-${index}`, path)));
});

t.teardown(async () => {
  await orthanc?.stop();
  await rm(workDirectory, { recursive: true, force: true });
});

function peer(): OrthancPeer {
  if (!orthanc) throw new Error('Orthanc did not start');
  return orthanc;
}

async function getBytes(route: string): Promise<Buffer> {
  const response = await fetch(`http://127.0.0.1:${peer().httpPort}${route}`);
  if (!response.ok) throw new Error(`Orthanc GET ${route} failed with HTTP ${response.status}`);
  return Buffer.from(await response.arrayBuffer());
}

t.test('orthanc stores JPEG objects', async (t) => {
  const { log, lines } = memoryLogger();
  const destination = destinationFor(peer().dicomPort, { calledAeTitle: peer().aeTitle });

  const results = await storeObjects({ destination, callingAeTitle, objects, log });

  t.same(results.map((result) => [result.id, result.outcome, result.status]), [['obj-0', 'stored', 0], ['obj-1', 'stored', 0]]);
  const instances = await peer().get<string[]>('/instances');
  t.equal(instances.length, 2, 'Orthanc holds two instances');

  for (const [index, object] of objects.entries()) {
    const found = await fetch(`http://127.0.0.1:${peer().httpPort}/tools/find`, {
      method: 'POST',
      body: JSON.stringify({ Level: 'Instance', Query: { SOPInstanceUID: object.sopInstanceUid } }),
    }).then((response) => response.json() as Promise<string[]>);
    t.equal(found.length, 1, `Orthanc found ${object.id}`);
    const orthancId = found[0] ?? '';
    const transferSyntax = (await getBytes(`/instances/${orthancId}/metadata/TransferSyntax`)).toString('utf8');
    t.equal(transferSyntax, object.transferSyntaxUid, 'kept the JPEG transfer syntax');
    const frame = await getBytes(`/instances/${orthancId}/frames/0/raw`);
    const sentFragments = await pixelFragments(objectPaths[index] ?? '', await mkdtemp(join(workDirectory, 'fragments-')));
    // Item 0 is the empty Basic Offset Table and item 1 contains the single frame.
    t.ok(sentFragments[1]?.equals(frame), 'frame bytes equal the JPEG that was sent');
  }
  for (const marker of patientMarkers) t.notOk(lines().includes(marker), `log contains no ${marker}`);
});

t.test('orthanc rejects wrong called AE title', async (t) => {
  const { log } = memoryLogger();
  const destination = destinationFor(peer().dicomPort, { calledAeTitle: 'NOT-ORTHANC' });

  const results = await storeObjects({ destination, callingAeTitle, objects, log });

  t.same(results.map((result) => result.outcome), ['permanent', 'permanent']);
  t.equal(results[0]?.reason, 'association rejected (permanent): called AE title not recognized');
  t.equal(results[0]?.associated, false);
});

t.test('orthanc echo succeeds', async (t) => {
  const { log } = memoryLogger();
  const result = await echo({ destination: destinationFor(peer().dicomPort, { calledAeTitle: peer().aeTitle }), callingAeTitle, log });
  t.equal(result.ok, true);
});
