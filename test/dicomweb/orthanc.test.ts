import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { StowRsClient } from '../../src/dicomweb/stow-rs.js';
import { Sender, type ObjectStoredEvent } from '../../src/pacs/sender.js';
import { Spool } from '../../src/spool/spool.js';
import type { SpoolEntry } from '../../src/spool/types.js';
import { startOrthanc, type OrthancPeer } from '../helpers/orthanc.js';
import { waitFor } from '../helpers/ports.js';
import { clipObject, memoryLogger, patientMarkers, stillObject, stowDestination, type TestObject } from './fixtures.js';

const directory = await mkdtemp(join(tmpdir(), 'endocap-stow-orthanc-'));
t.teardown(() => rm(directory, { recursive: true, force: true }));

const orthanc: OrthancPeer = await startOrthanc({ dicomWeb: true });
t.teardown(() => orthanc.stop());
const base = `http://127.0.0.1:${orthanc.httpPort}`;

async function orthancIdOf(sopInstanceUid: string): Promise<string> {
  const found = await orthanc.post<string[]>('/tools/find', { Level: 'Instance', Query: { SOPInstanceUID: sopInstanceUid } });
  if (found.length !== 1 || !found[0]) throw new Error(`Orthanc holds ${found.length} instances with that SOP Instance UID`);
  return found[0];
}

/** Retrieves one instance with WADO-RS (PS3.18 10.4) and returns the single part of the multipart response. */
async function wadoRetrieve(object: TestObject): Promise<Buffer> {
  const route = `/dicom-web/studies/${object.studyInstanceUid}/series/${object.seriesInstanceUid}/instances/${object.meta.sopInstanceUid}`;
  const response = await fetch(`${base}${route}`, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  if (!response.ok) throw new Error(`WADO-RS GET failed with HTTP ${response.status}`);
  const boundary = /boundary="?([^";]+)"?/i.exec(response.headers.get('content-type') ?? '')?.[1];
  if (!boundary) throw new Error(`WADO-RS response without a boundary: ${response.headers.get('content-type')}`);
  const body = Buffer.from(await response.arrayBuffer());
  const delimiter = Buffer.from(`--${boundary}`);
  const start = body.indexOf(delimiter);
  const headersEnd = body.indexOf('\r\n\r\n', start);
  const end = body.indexOf(Buffer.from(`\r\n--${boundary}`), headersEnd);
  if (start < 0 || headersEnd < 0 || end < 0) throw new Error('WADO-RS response is not a multipart body with one part');
  return body.subarray(headersEnd + 4, end);
}

t.test('still and clip reach Orthanc over STOW-RS unchanged', async (t) => {
  const still = await stillObject(join(directory, 'objects'), 1);
  const clip = await clipObject(join(directory, 'objects'), 1, 50);
  // Noise compresses poorly. Above 1 MiB the request sends "Expect: 100-continue", and Orthanc 1.10 never sends 100 Continue.
  const large = await stillObject(join(directory, 'objects'), 9, { width: 1600, height: 1200, noise: true });
  t.ok(large.part10.length > 1024 * 1024, `large still is above 1 MiB (${large.part10.length} bytes)`);
  const spool = new Spool({ directory: join(directory, 'spool'), destinations: [{ name: 'web', commitment: false }], log: memoryLogger().log });
  await spool.open();
  t.teardown(() => spool.close());
  const entries: SpoolEntry[] = [await spool.add(still.part10, still.meta), await spool.add(clip.part10, clip.meta), await spool.add(large.part10, large.meta)];
  // The spool removes an object once every destination stored it, so its bytes are read before sending.
  const spooledFiles = await Promise.all(entries.map((entry) => spool.read(entry.id)));

  const { log, lines } = memoryLogger();
  const client = new StowRsClient({ destination: stowDestination(`${base}/dicom-web`), log });
  const sender = new Sender({ destination: stowDestination(`${base}/dicom-web`), transfer: client.transfer, endpoint: client.endpoint, queue: spool, log });
  const stored: ObjectStoredEvent[] = [];
  sender.on('objectStored', (event) => stored.push(event));
  sender.on('objectSetAside', ({ reason }) => t.fail(`set aside: ${reason}`));
  t.teardown(() => sender.stop());
  sender.start();
  await waitFor(() => stored.length === 3, 30_000, 'every object to be stored');

  t.same(stored.map((event) => event.id).sort(), entries.map((entry) => entry.id).sort(), 'every spooled object reported stored');
  t.ok(stored.every((event) => !event.warning), 'no warnings');

  for (const [index, name, object] of [[0, 'still', still], [1, 'clip', clip], [2, 'large still', large]] as const) {
    const spooled = spooledFiles[index] ?? Buffer.alloc(0);
    t.ok(spooled.equals(object.part10), `${name}: spooled bytes are the built object`);
    // Orthanc keeps the received Part 10 file as it is (StorageCompression off, no transcoding), meta header included.
    const kept = await orthanc.file(await orthancIdOf(object.meta.sopInstanceUid));
    t.equal(kept.length, spooled.length, `${name}: Orthanc's file has the spooled length`);
    t.ok(kept.equals(spooled), `${name}: Orthanc's file equals the spooled file byte for byte`);
    const retrieved = await wadoRetrieve(object);
    t.ok(retrieved.equals(spooled), `${name}: WADO-RS returns the spooled file byte for byte`);
  }

  for (const marker of patientMarkers) t.notOk(lines().includes(marker), `log has no patient data (${marker})`);
  t.match(lines(), /"url":"http:\/\/127\.0\.0\.1:\d+\/dicom-web\/studies"/, 'sender start names the STOW-RS URL');
});

t.test('duplicate post to Orthanc counts as stored', async (t) => {
  const still = await stillObject(join(directory, 'objects'), 2);
  const { log } = memoryLogger();
  const client = new StowRsClient({ destination: stowDestination(`${base}/dicom-web/`), log });
  const object = { id: 'dup', ...still.meta, read: async () => still.part10 };
  const first = await client.transfer([object], { signal: new AbortController().signal, onResult: () => undefined });
  const second = await client.transfer([object], { signal: new AbortController().signal, onResult: () => undefined });
  t.equal(first[0]?.outcome, 'stored', 'first post stored');
  t.ok(second[0]?.outcome === 'stored' || second[0]?.outcome === 'warning', `second post counts as stored (${second[0]?.reason})`);
});
