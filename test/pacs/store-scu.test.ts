import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dimse from 'dcmjs-dimse';
import t, { type Test } from 'tap';
import { MORE_AHEAD, echo, storeObjects, type LazyStoreObject, type StoreObject, type StoreResult } from '../../src/pacs/store-scu.js';
import { splitPart10 } from '../../src/pacs/part10.js';
import { cStoreRequest } from '../../src/pacs/dimse-command.js';
import { ScuAssociation, type DimseRequest } from '../../src/pacs/scu-association.js';
import { SHARED_BUFFERS_PER_SIZE } from '../../src/pacs/store-batch.js';
import {
  destinationFor,
  dump,
  explicitLittleEndian,
  implicitLittleEndian,
  jpegBaseline,
  makeJpegObject,
  makeUncompressedObject,
  memoryLogger,
  patientMarkers,
  pixelFragments,
  storeObjectFromFile,
} from './fixtures.js';
import { freePort } from '../helpers/ports.js';
import { startEarlyResponseScp } from './early-response-scp.js';
import { startFakeScp, startPduLengthProxy, startSilentServer, startStorescp, type FakeBehaviour } from './peers.js';

const callingAeTitle = 'ENDOCAP';
const run = promisify(execFile);

let workDirectory = '';
let smallJpeg: StoreObject;
let secondJpeg: StoreObject;
let largeJpeg: StoreObject;
let explicitObject: StoreObject;

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-store-scu-'));
  smallJpeg = await storeObjectFromFile('obj-small', await makeJpegObject(workDirectory, 'small'));
  secondJpeg = await storeObjectFromFile('obj-second', await makeJpegObject(workDirectory, 'second', { width: 640, height: 480 }));
  // About 6 MB of noise: hundreds of PDUs, more than the socket buffers hold.
  largeJpeg = await storeObjectFromFile('obj-large', await makeJpegObject(workDirectory, 'large', { width: 3840, height: 2160, noise: true }));
  const explicitPath = await makeUncompressedObject(join(workDirectory, 'small.dcm'), join(workDirectory, 'explicit.dcm'));
  explicitObject = await storeObjectFromFile('obj-explicit', explicitPath);
});

t.teardown(() => rm(workDirectory, { recursive: true, force: true }));

function assertNoPatientData(t: Test, text: string): void {
  for (const marker of patientMarkers) t.notOk(text.includes(marker), `output contains no ${marker}`);
}

async function outputDirectory(name: string): Promise<string> {
  const directory = join(workDirectory, name);
  await mkdir(directory, { recursive: true });
  return directory;
}

async function storeToFake(t: Test, behaviour: FakeBehaviour, objects: StoreObject[], requestTimeoutMs = 20_000): Promise<StoreResult[]> {
  const fake = await startFakeScp(behaviour);
  t.teardown(() => fake.stop());
  const { log, lines } = memoryLogger();
  const results = await storeObjects({ destination: destinationFor(fake.port, { requestTimeoutMs }), callingAeTitle, objects, log });
  assertNoPatientData(t, lines() + JSON.stringify(results));
  return results;
}

t.test('store-scu sends JPEG unchanged to storescp', async (t) => {
  const directory = await outputDirectory('unchanged');
  const port = await freePort();
  // +B writes the data set exactly as received, so the bytes can be compared.
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['-v', '+xa', '+B'] });
  t.teardown(() => peer.stop());
  const sockets: Array<{ noDelayAtConnect: boolean }> = [];
  const onSocket = (socket: Socket): void => {
    const record = { noDelayAtConnect: false };
    sockets.push(record);
    socket.once('connect', () => {
      // Node keeps the TCP_NODELAY state it applied to the handle under this symbol.
      const symbol = Object.getOwnPropertySymbols(socket).find((entry) => entry.description === 'kSetNoDelay');
      record.noDelayAtConnect = symbol !== undefined && (socket as unknown as Record<symbol, unknown>)[symbol] === true;
    });
  };
  const { log, lines } = memoryLogger();
  // The readiness probe of startStorescp connects but never associates, so it is never acknowledged.
  const countAssociations = (): number => peer.output().match(/Association Acknowledged/g)?.length ?? 0;
  const associationsBefore = countAssociations();

  const results = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [smallJpeg, secondJpeg], log, onSocket });

  t.same(results.map((result) => [result.id, result.outcome, result.status]), [['obj-small', 'stored', 0], ['obj-second', 'stored', 0]]);
  t.equal(sockets.length, 1, 'one connection for the batch');
  t.ok(sockets[0]?.noDelayAtConnect, 'TCP_NODELAY set on the socket');
  t.equal(countAssociations() - associationsBefore, 1, 'storescp saw one association');

  const files = await readdir(directory);
  t.equal(files.length, 2);
  for (const sent of [smallJpeg, secondJpeg]) {
    const storedName = files.find((name) => name.endsWith(sent.sopInstanceUid));
    t.ok(storedName, `storescp wrote ${sent.id}`);
    if (!storedName) continue;
    const storedPath = join(directory, storedName);
    const text = await dump(storedPath);
    t.match(text, `(0002,0010) UI [${jpegBaseline}]`, 'stored as JPEG Baseline');
    t.match(text, `(0008,0018) UI [${sent.sopInstanceUid}]`);
    const stored = splitPart10(await readFile(storedPath));
    t.ok(stored.dataset.equals(splitPart10(sent.part10).dataset), 'data set bytes equal what was sent');
    const sentFragments = await pixelFragments(join(workDirectory, sent.id === 'obj-small' ? 'small.dcm' : 'second.dcm'), await outputDirectory(`fragments-sent-${sent.id}`));
    const storedFragments = await pixelFragments(storedPath, await outputDirectory(`fragments-stored-${sent.id}`));
    t.equal(storedFragments.length, sentFragments.length, 'same number of pixel data items');
    t.ok(storedFragments.every((fragment, index) => sentFragments[index]?.equals(fragment)), 'pixel data items equal');
  }
  t.match(lines(), /"peerMaxPdu":16384,"msg":"association accepted"/, 'negotiation is logged at debug with the peer maximum PDU length');
  assertNoPatientData(t, lines());
});

t.test('store-scu silences library log below debug', async (t) => {
  const port = await freePort();
  const { log, lines } = memoryLogger('info');
  await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [smallJpeg], log });
  t.equal(dimse.log.getLevel(), dimse.log.levels.SILENT, 'loglevel root logger is silent');
  t.notMatch(lines(), 'dcmjs-dimse log line');
});

t.test('store-scu converts uncompressed data to the accepted syntax', async (t) => {
  const directory = await outputDirectory('implicit');
  const port = await freePort();
  // +xi accepts Implicit VR Little Endian only, and the object is Explicit VR Little Endian.
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xi'] });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();

  const [result] = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [explicitObject], log });

  t.equal(result?.outcome, 'stored');
  const files = await readdir(directory);
  t.equal(files.length, 1);
  const storedPath = join(directory, files[0] ?? '');
  t.match(await dump(storedPath), `(0002,0010) UI [${implicitLittleEndian}]`);
  const sentPixels = await pixelFragments(join(workDirectory, 'explicit.dcm'), await outputDirectory('pixels-explicit'));
  const storedPixels = await pixelFragments(storedPath, await outputDirectory('pixels-implicit'));
  t.ok(sentPixels[0] && storedPixels[0]?.equals(sentPixels[0]), 'pixel values unchanged');
});

t.test('store-scu conversion prints no element values', async (t) => {
  // A private element missing from dcmjs's dictionary, holding a patient marker.
  // DCMTK's dictionary has this creator's element, so dcmodify can write it.
  const privatePath = join(workDirectory, 'explicit-private.dcm');
  await copyFile(join(workDirectory, 'explicit.dcm'), privatePath);
  await run('dcmodify', ['-nb', '-i', '(0009,0010)=GEMS_IDEN_01', '-i', `(0009,1001)=${patientMarkers[0]}`, privatePath]);
  const privateObject = await storeObjectFromFile('obj-private', privatePath);
  const directory = await outputDirectory('implicit-private');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xi'] });
  t.teardown(() => peer.stop());
  const { log, lines } = memoryLogger();

  const printed: string[] = [];
  const writes = { out: process.stdout.write, err: process.stderr.write };
  const capture = (chunk: unknown): boolean => {
    printed.push(String(chunk));
    return true;
  };
  process.stdout.write = capture as typeof process.stdout.write;
  process.stderr.write = capture as typeof process.stderr.write;
  let outcome: string | undefined;
  try {
    const [result] = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [privateObject], log });
    outcome = result?.outcome;
  } finally {
    process.stdout.write = writes.out;
    process.stderr.write = writes.err;
  }

  t.equal(outcome, 'stored', 'converted to Implicit VR and stored');
  t.match(await dump(join(directory, (await readdir(directory))[0] ?? '')), patientMarkers[0] ?? '', 'the private element reached the peer');
  t.notOk(printed.join('').includes(patientMarkers[0] ?? ''), 'nothing printed the marker');
  assertNoPatientData(t, lines());
});

t.test('store-scu never decompresses JPEG', async (t) => {
  const directory = await outputDirectory('no-context');
  const port = await freePort();
  // Without +xa storescp accepts uncompressed transfer syntaxes only.
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();

  const results = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [smallJpeg, explicitObject], log });

  t.same(results[0], {
    id: 'obj-small',
    outcome: 'transient',
    reason: `no acceptable presentation context: the peer accepted none for SOP class ${smallJpeg.sopClassUid} in transfer syntax ${jpegBaseline}`,
    associated: true,
    noContext: true,
  });
  t.equal(results[1]?.outcome, 'stored', 'the uncompressed object in the same batch is stored');
  const files = await readdir(directory);
  t.same(files.map((name) => name.endsWith(explicitObject.sopInstanceUid)), [true], 'only the uncompressed object reached storescp');
});

t.test('store-scu connection refused is transient', async (t) => {
  const port = await freePort();
  const { log } = memoryLogger();
  const [result] = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [smallJpeg], log });
  t.same(result, { id: 'obj-small', outcome: 'transient', reason: `connection refused by 127.0.0.1:${port}`, associated: false });
});

t.test('store-scu rejected association by storescp is permanent', async (t) => {
  const directory = await outputDirectory('refuse');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['--refuse'] });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();
  const results = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [smallJpeg, secondJpeg], log });
  t.same(results.map((result) => result.outcome), ['permanent', 'permanent']);
  t.equal(results[0]?.reason, 'association rejected (permanent): no reason given');
  t.equal(results[0]?.associated, false);
});

t.test('store-scu transient rejection is transient', async (t) => {
  // A fake peer rejects, because no real peer rejects with "transient, temporary congestion" on request.
  const [result] = await storeToFake(t, { kind: 'reject', result: 2, source: 3, reason: 1 }, [smallJpeg]);
  t.equal(result?.outcome, 'transient');
  t.equal(result?.reason, 'association rejected (transient): temporary congestion');
});

t.test('store-scu peer abort mid-transfer', async (t) => {
  // A fake peer sends A-ABORT after the first data PDU and keeps the connection
  // open, because no real peer aborts on request. The request timeout is long,
  // so only the abort itself can end the call with this reason.
  const results = await storeToFake(t, { kind: 'abort-during-data' }, [largeJpeg, smallJpeg]);
  t.equal(results[0]?.outcome, 'transient');
  t.match(results[0]?.reason, /^association aborted by 127\.0\.0\.1:\d+$/);
  t.equal(results[1]?.outcome, 'transient');
  t.match(results[1]?.reason, /^not sent: association with 127\.0\.0\.1:\d+ ended early/);
});

t.test('store-scu connection reset mid-transfer', async (t) => {
  // A fake peer resets the TCP connection after the first data PDU.
  const [result] = await storeToFake(t, { kind: 'reset-during-data' }, [largeJpeg]);
  t.equal(result?.outcome, 'transient');
  t.match(result?.reason, /^connection (reset|closed) by 127\.0\.0\.1:\d+$/);
});

t.test('store-scu failure statuses', async (t) => {
  // dcmjs-dimse Scp fakes return chosen statuses, because no real peer returns them on request.
  const outOfResources = await storeToFake(t, { kind: 'status', status: 0xa700 }, [smallJpeg, secondJpeg]);
  t.same(outOfResources[0], { id: 'obj-small', outcome: 'transient', status: 0xa700, reason: 'peer out of resources (status 0xA700)', associated: true });
  t.equal(outOfResources[1]?.outcome, 'transient', 'later objects wait for the next association');
  t.match(outOfResources[1]?.reason, /^not sent: .* reported out of resources for an earlier object$/);
  t.equal(outOfResources[1]?.status, undefined);

  const cannotUnderstand = await storeToFake(t, { kind: 'status', status: 0xc000 }, [smallJpeg, secondJpeg]);
  t.same(cannotUnderstand.map((result) => [result.outcome, result.status]), [['permanent', 0xc000], ['permanent', 0xc000]]);
  t.equal(cannotUnderstand[0]?.reason, 'peer rejected the object: cannot understand (status 0xC000)');

  const warning = await storeToFake(t, { kind: 'status', status: 0xb007 }, [smallJpeg]);
  t.same(warning[0], { id: 'obj-small', outcome: 'warning', status: 0xb007, reason: 'stored with warning 0xB007 (data set does not match SOP class)', associated: true });
});

t.test('store-scu sends each object once across statuses', async (t) => {
  // The next object is queued to go out on a success only; after any other status it goes the usual way.
  const statuses = [0x0000, 0xb000, 0xc000, 0x0000, 0xa900, 0x0000, 0x0000];
  const fake = await startFakeScp({ kind: 'statuses', statuses });
  t.teardown(() => fake.stop());
  const { log } = memoryLogger();
  const objects = statuses.map((_, index) => ({ ...(index % 2 === 0 ? smallJpeg : secondJpeg), id: `obj-${index}` }));
  const results = await storeObjects({ destination: destinationFor(fake.port), callingAeTitle, objects, log });
  t.same(
    results.map((result) => [result.id, result.outcome, result.status]),
    [
      ['obj-0', 'stored', 0x0000],
      ['obj-1', 'warning', 0xb000],
      ['obj-2', 'permanent', 0xc000],
      ['obj-3', 'stored', 0x0000],
      ['obj-4', 'permanent', 0xa900],
      ['obj-5', 'stored', 0x0000],
      ['obj-6', 'stored', 0x0000],
    ],
  );
  t.equal(fake.received, statuses.length, 'the peer received each object once');
  t.equal(fake.associations, 1, 'over one association');
});

t.test('association sends queued request after success', async (t) => {
  const directory = await outputDirectory('queued');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa', '+B'] });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();
  const open = (peerPort: number): Promise<ScuAssociation> =>
    ScuAssociation.open({
      host: '127.0.0.1',
      port: peerPort,
      callingAeTitle,
      calledAeTitle: 'STORESCP',
      connectTimeoutMs: 2_000,
      associationTimeoutMs: 3_000,
      contexts: [{ abstractSyntaxUid: smallJpeg.sopClassUid, transferSyntaxUids: [jpegBaseline] }],
      log,
    });
  const request = (object: StoreObject): DimseRequest => ({
    abstractSyntaxUid: object.sopClassUid,
    transferSyntaxUid: jpegBaseline,
    command: cStoreRequest(object.sopClassUid, object.sopInstanceUid),
    dataset: splitPart10(object.part10).dataset,
  });
  const options = { timeoutMs: 5_000, label: 'C-STORE' };

  const association = await open(port);
  t.equal(association.sendAfterSuccess(request(secondJpeg), options), undefined, 'nothing queued while no request is in flight');
  const first = association.send(request(smallJpeg), options);
  const queued = association.sendAfterSuccess(request(secondJpeg), options);
  t.equal(association.sendAfterSuccess(request(secondJpeg), options), undefined, 'one request queued at a time');
  t.equal(queued?.state, 'waiting');
  const stateAtFirstResponse = await first.then(() => queued?.state);
  t.equal(stateAtFirstResponse, 'sent', 'on the wire when the first response reached the caller');
  t.equal((await queued?.response)?.status, 0x0000);
  await association.release(2_000);
  const files = await readdir(directory);
  t.same(
    [smallJpeg, secondJpeg].map((object) => files.filter((name) => name.endsWith(object.sopInstanceUid)).length),
    [1, 1],
    'storescp stored each object once',
  );

  // A fake returns a warning first, because no real peer does so on request.
  const fake = await startFakeScp({ kind: 'statuses', statuses: [0xb000, 0x0000] });
  t.teardown(() => fake.stop());
  const warned = await open(fake.port);
  const warnedFirst = warned.send(request(smallJpeg), options);
  const dropped = warned.sendAfterSuccess(request(secondJpeg), options);
  t.same(await warnedFirst.then((response) => [response.status, dropped?.state]), [0xb000, 'dropped'], 'dropped after a warning');
  await t.rejects(dropped?.response.then(() => undefined) ?? Promise.resolve(), /not sent: the request before it did not succeed/);
  t.equal(fake.received, 1, 'the peer got the first request only');
  t.equal((await warned.send(request(secondJpeg), options)).status, 0x0000, 'the association goes on');
  t.equal(fake.received, 2);
  await warned.release(2_000);
});

t.test('store-scu peer that never responds', async (t) => {
  // A fake peer reads the request and never responds.
  const [result] = await storeToFake(t, { kind: 'never-answer' }, [smallJpeg], 1_500);
  t.equal(result?.outcome, 'transient');
  t.match(result?.reason, /^C-STORE of object obj-small to 127\.0\.0\.1:\d+ got no response within 1500 ms$/);
});

t.test('store-scu peer that stops reading', async (t) => {
  // A fake peer stops reading after the association: its TCP window closes mid-transfer.
  const fake = await startFakeScp({ kind: 'stop-reading' });
  t.teardown(() => fake.stop());
  const { log } = memoryLogger();
  const results = await storeObjects({ destination: destinationFor(fake.port, { requestTimeoutMs: 1_500 }), callingAeTitle, objects: [largeJpeg, smallJpeg], log });
  t.equal(results[0]?.outcome, 'transient');
  t.match(results[0]?.reason, /^C-STORE of object obj-large to 127\.0\.0\.1:\d+ stalled: the peer accepted no data for 1500 ms$/);
  t.equal(results[1]?.outcome, 'transient');
  t.equal(fake.received, 0, 'the peer never received a whole data set');
});

t.test('store-scu peer that never negotiates', async (t) => {
  // A plain TCP server accepts the connection and never responds to the A-ASSOCIATE-RQ.
  const silent = await startSilentServer();
  t.teardown(() => silent.stop());
  const { log } = memoryLogger();
  const [result] = await storeObjects({ destination: destinationFor(silent.port, { associationTimeoutMs: 1_000 }), callingAeTitle, objects: [smallJpeg], log });
  t.same(result, { id: 'obj-small', outcome: 'transient', reason: `association with 127.0.0.1:${silent.port} timed out after 1000 ms`, associated: false });
});

t.test('store-scu invalid objects are permanent', async (t) => {
  const port = await freePort();
  const { log } = memoryLogger();
  const garbage: StoreObject = { ...smallJpeg, id: 'obj-garbage', part10: Buffer.from('not a DICOM file') };
  const mismatched: StoreObject = { ...smallJpeg, id: 'obj-mismatch', transferSyntaxUid: explicitLittleEndian };
  const results = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [garbage, mismatched], log });
  t.same(results[0], { id: 'obj-garbage', outcome: 'permanent', reason: 'invalid Part 10 file: no DICM prefix after the 128-byte preamble' });
  t.same(results[1], { id: 'obj-mismatch', outcome: 'permanent', reason: 'File Meta Information differs from the queued metadata: transfer syntax' });
});

t.test('echo succeeds and reports refusal', async (t) => {
  const directory = await outputDirectory('echo');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();

  const ok = await echo({ destination: destinationFor(port), callingAeTitle, log });
  t.equal(ok.ok, true);
  t.equal(ok.reason, undefined);
  t.type(ok.ms, 'number');

  const closedPort = await freePort();
  const refused = await echo({ destination: destinationFor(closedPort), callingAeTitle, log });
  t.equal(refused.ok, false);
  t.equal(refused.reason, `connection refused by 127.0.0.1:${closedPort}`);
});

t.test('store-scu reads lazy objects when sending', async (t) => {
  const reads: string[] = [];
  const lazy = (object: StoreObject, id: string, read: () => Promise<Buffer>): LazyStoreObject => {
    const { sopClassUid, sopInstanceUid, transferSyntaxUid } = object;
    return { id, sopClassUid, sopInstanceUid, transferSyntaxUid, read: () => { reads.push(id); return read(); } };
  };
  const missing = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
  const objects = [
    lazy(smallJpeg, 'lazy-first', async () => smallJpeg.part10),
    lazy(secondJpeg, 'lazy-missing', () => Promise.reject(missing)),
    lazy(secondJpeg, 'lazy-busy', () => Promise.reject(new Error('EBUSY: resource busy'))),
    lazy(secondJpeg, 'lazy-last', async () => secondJpeg.part10),
  ];
  const { log } = memoryLogger();

  const refusedPort = await freePort();
  const refused = await storeObjects({ destination: destinationFor(refusedPort), callingAeTitle, objects, log });
  t.same(refused.map((result) => result.outcome), ['transient', 'transient', 'transient', 'transient']);
  t.same(reads, [], 'nothing is read when the association cannot be opened');

  const directory = await outputDirectory('lazy');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa', '+uf'] });
  t.teardown(() => peer.stop());
  const seen: string[] = [];
  const results = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects, log, onResult: (result) => void seen.push(result.id) });

  t.same(results.map((result) => [result.id, result.outcome]), [['lazy-first', 'stored'], ['lazy-missing', 'permanent'], ['lazy-busy', 'transient'], ['lazy-last', 'stored']]);
  t.equal(results[1]?.reason, 'reading the queued object failed: ENOENT: no such file');
  t.equal(results[2]?.reason, 'reading the queued object failed: EBUSY: resource busy');
  t.same(reads, ['lazy-first', 'lazy-missing', 'lazy-busy', 'lazy-last'], 'each object read once, in order');
  t.same(seen, ['lazy-first', 'lazy-missing', 'lazy-busy', 'lazy-last'], 'onResult got every result once');
  t.equal((await readdir(directory)).length, 2, 'storescp received the two readable objects');
});

/**
 * Creates a lazy object that reads as the spool does: into the buffer passed
 * in when that is long enough, whose memory is then added to `received`.
 */
function readingInto(source: StoreObject, id: string, received: ArrayBufferLike[]): LazyStoreObject {
  const { sopClassUid, sopInstanceUid, transferSyntaxUid, part10 } = source;
  return {
    id,
    sopClassUid,
    sopInstanceUid,
    transferSyntaxUid,
    bytes: part10.length,
    read: async (into) => {
      if (into === undefined || into.length <= part10.length) return Buffer.from(part10);
      received.push(into.buffer);
      part10.copy(into);
      return into.subarray(0, part10.length);
    },
  };
}

t.test('store-scu reads into reused buffers and sends every object unchanged', async (t) => {
  // Sizes from 10 kB to 6 MB in an order that makes buffers of every size
  // change hands. Two different large objects in a row: a buffer given back
  // before its 6 MB were written would be overwritten by the next one.
  const otherLarge = await storeObjectFromFile('obj-large-b', await makeJpegObject(workDirectory, 'large-b', { width: 3600, height: 2000, noise: true }));
  const sources = [largeJpeg, otherLarge, smallJpeg, secondJpeg, otherLarge, largeJpeg, smallJpeg, secondJpeg, smallJpeg];
  const buffersGiven: ArrayBufferLike[] = [];
  const objects = sources.map((source, index) => readingInto(source, `reuse-${index}`, buffersGiven));
  const directory = await outputDirectory('reuse');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa', '+uf', '+B'] });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();

  const results = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects, log });

  t.same(results.map((result) => result.outcome), sources.map(() => 'stored'));
  t.equal(buffersGiven.length, sources.length, 'every object was read into a given buffer');
  const distinct = new Set(buffersGiven).size;
  t.ok(distinct < sources.length, `${sources.length} objects read into ${distinct} buffers`);
  const received = await readdir(directory);
  t.equal(received.length, sources.length, 'storescp wrote one file per object');
  for (const name of received) {
    const stored = splitPart10(await readFile(join(directory, name)));
    const source = sources.find((candidate) => candidate.sopInstanceUid === stored.sopInstanceUid);
    t.ok(source !== undefined && splitPart10(source.part10).dataset.equals(stored.dataset), `${name} holds the data set sent, byte for byte`);
  }
});

t.test('store-scu response and A-ABORT together', async (t) => {
  // A fake writes the first response and an A-ABORT in one segment, which no real peer does on request.
  const fake = await startFakeScp({ kind: 'abort-with-response', responses: 1 });
  t.teardown(() => fake.stop());
  const { log } = memoryLogger();
  const objects = ['abort-a', 'abort-b', 'abort-c'].map((id) => ({ ...smallJpeg, id }));
  const results = await storeObjects({ destination: destinationFor(fake.port), callingAeTitle, objects, log });

  t.same(
    results.map((result) => [result.outcome, result.unsent === true]),
    [
      ['stored', false],
      ['transient', true],
      ['transient', true],
    ],
    'the objects after the response go back unsent',
  );
  t.match(results[1]?.reason, /^not sent: association with 127\.0\.0\.1:\d+ ended before the object was sent$/);
  t.equal(fake.aborts, 1);
  t.equal(fake.received, 1, 'the peer got the first object only');
  t.equal(fake.bytesReceived < 2 * smallJpeg.part10.length, true, 'no part of the second object went out');
});

t.test('store-scu odd and tiny peer PDU maximums', async (t) => {
  // storescp announces even lengths only, so a proxy in front of it rewrites the
  // Maximum Length Received of the A-ASSOCIATE-AC (PS3.8 D.1).
  const directory = await outputDirectory('odd-pdu');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa', '+B'] });
  t.teardown(() => peer.stop());
  const storeThrough = async (announced: number, object: StoreObject): Promise<StoreResult | undefined> => {
    const proxy = await startPduLengthProxy(port, announced);
    t.teardown(() => proxy.stop());
    const { log } = memoryLogger();
    const [result] = await storeObjects({ destination: destinationFor(proxy.port), callingAeTitle, objects: [object], log });
    t.equal(proxy.rewrites, 1, `the proxy announced ${announced} bytes`);
    return result;
  };

  const odd = await storeThrough(4097, { ...secondJpeg, id: 'obj-odd-pdu' });
  t.equal(odd?.outcome, 'stored', 'stored with an odd maximum of 4097 bytes');
  const files = await readdir(directory);
  const stored = files.find((name) => name.endsWith(secondJpeg.sopInstanceUid));
  t.ok(stored !== undefined && splitPart10(await readFile(join(directory, stored))).dataset.equals(splitPart10(secondJpeg.part10).dataset), 'storescp holds the data set sent, byte for byte');

  const tiny = await storeThrough(6, { ...smallJpeg, id: 'obj-tiny-pdu' });
  t.equal(tiny?.outcome, 'transient', 'a maximum too small to carry data fails the association, and the object stays queued');
  t.match(tiny?.reason, /^protocol error with 127\.0\.0\.1:\d+: the peer announced a maximum PDU length of 6 bytes, below the 1024 bytes endocap needs; check the peer's PDU size setting$/);
});

t.test('store-scu queued request times out', async (t) => {
  // A fake stops responding after two objects, because no real peer does on request.
  const fake = await startFakeScp({ kind: 'silent-after-responses', responses: 2 });
  t.teardown(() => fake.stop());
  const { log } = memoryLogger();
  const objects = ['silent-a', 'silent-b', 'silent-c', 'silent-d'].map((id) => ({ ...smallJpeg, id }));
  const results = await storeObjects({ destination: destinationFor(fake.port, { requestTimeoutMs: 400 }), callingAeTitle, objects, log });

  t.same(
    results.map((result) => [result.outcome, result.unsent === true]),
    [
      ['stored', false],
      ['stored', false],
      ['transient', false],
      ['transient', true],
    ],
  );
  t.match(results[2]?.reason, /^C-STORE of object silent-c to 127\.0\.0\.1:\d+ got no response within 400 ms$/);
  t.equal(fake.received, 3, 'the third object went out once');
});

t.test('store-scu response before the data set', async (t) => {
  // The response to a large object arrives while its data set is still being written; the next request waits for the write to end.
  const peer = await startEarlyResponseScp((index) => (index % 3 === 2 ? 0xb000 : 0x0000));
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();
  const objects = [smallJpeg, largeJpeg, secondJpeg, largeJpeg, smallJpeg, largeJpeg, secondJpeg].map((object, index) => ({ ...object, id: `early-${index}` }));
  const results = await storeObjects({ destination: destinationFor(peer.port), callingAeTitle, objects, log });

  t.same(peer.log.faults, [], 'no request started inside another one');
  t.same(peer.log.messageIds, [1, 2, 3, 4, 5, 6, 7], 'one message ID per request, in order');
  t.same(peer.log.sopInstanceUids, objects.map((object) => object.sopInstanceUid), 'each object once, in order');
  t.same(peer.log.datasetBytes, objects.map((object) => splitPart10(object.part10).dataset.length), 'every data set whole');
  t.same(results.map((result) => result.outcome), ['stored', 'stored', 'warning', 'stored', 'stored', 'warning', 'stored']);
});

t.test('store-scu requests more objects before the last', async (t) => {
  const directory = await outputDirectory('more-ahead');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa'] });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();
  const objects = Array.from({ length: 10 }, (_, index) => ({ ...smallJpeg, id: `given-${index}` }));
  const extraObjects = Array.from({ length: 5 }, (_, index) => ({ ...smallJpeg, id: `extra-${index}`, read: async () => smallJpeg.part10 }));
  const reported: string[] = [];
  const reportedAtAsk: number[] = [];
  const results = await storeObjects({
    destination: destinationFor(port),
    callingAeTitle,
    objects,
    log,
    onResult: (result) => void reported.push(result.id),
    more: async () => {
      reportedAtAsk.push(reported.length);
      return reportedAtAsk.length === 1 ? extraObjects : [];
    },
  });

  t.same(results.map((result) => result.id), [...objects, ...extraObjects].map((object) => object.id), 'every object has a result, in order');
  t.ok(results.every((result) => result.outcome === 'stored'), 'every object stored');
  t.same(reported, results.map((result) => result.id), 'results reported in order');
  // Asked for at the last given object, 8 results are reported. The first extra object would then
  // be read, and the journal written, between that object's response and the next request.
  t.ok((reportedAtAsk[0] ?? 10) <= objects.length - MORE_AHEAD, `asked for more with ${reportedAtAsk[0]} of 10 results reported`);
  t.equal(reportedAtAsk.length, 2, 'asked again near the end of the extra objects, and stopped when none came');
});

t.test('store-scu takes more objects one at a time', async (t) => {
  const directory = await outputDirectory('more-one-at-a-time');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa'] });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();
  // Batches smaller than MORE_AHEAD: more is asked for at the first object of each.
  const queue = [secondJpeg, largeJpeg].map((object, index) => ({ ...object, id: `single-${index + 1}`, read: async () => object.part10 }));
  let asks = 0;
  const results = await storeObjects({
    destination: destinationFor(port),
    callingAeTitle,
    objects: [{ ...smallJpeg, id: 'single-0' }],
    log,
    more: async () => {
      asks += 1;
      const next = queue.shift();
      return next === undefined ? [] : [next];
    },
  });

  t.same(results.map((result) => result.id), ['single-0', 'single-1', 'single-2'], 'one result per object, in order');
  t.ok(results.every((result) => result.outcome === 'stored'), 'every object stored');
  t.equal(asks, 3, 'asked until none came');
  t.equal((await readdir(directory)).length, 3, 'storescp wrote three files');
});

t.test('store-scu asks for no more objects after an abort', async (t) => {
  const fake = await startFakeScp({ kind: 'abort-after-responses', responses: 2 });
  t.teardown(() => fake.stop());
  const { log } = memoryLogger();
  // More objects are asked for while the last MORE_AHEAD are sent: the abort comes before that.
  const objects = ['more-a', 'more-b', 'more-c', 'more-d', 'more-e', 'more-f', 'more-g'].map((id) => ({ ...smallJpeg, id }));
  let moreCalls = 0;
  const results = await storeObjects({
    destination: destinationFor(fake.port),
    callingAeTitle,
    objects,
    log,
    // Recording a result takes a while, so the A-ABORT after the second response arrives before the last object's turn.
    onResult: () => new Promise((resolve) => setTimeout(resolve, 100)),
    more: async () => {
      moreCalls += 1;
      return [{ ...smallJpeg, id: 'more-extra', read: async () => smallJpeg.part10 }];
    },
  });

  t.same(results.map((result) => result.outcome), ['stored', 'stored', 'transient', 'transient', 'transient', 'transient', 'transient']);
  t.ok(results.slice(2).every((result) => result.unsent === true), 'the objects after the abort are unsent');
  t.equal(moreCalls, 0, 'no objects were taken for an aborted association');
});

t.test('store-scu reuses shared read buffers across associations, also after failed sends and reads', async (t) => {
  const seen: ArrayBufferLike[] = [];
  const lazyObjects = (prefix: string): LazyStoreObject[] => [smallJpeg, secondJpeg].map((source, index) => readingInto(source, `${prefix}-${index}`, seen));
  const { log } = memoryLogger();

  // Each association fails in the middle of its first data set: that buffer may be reused only once the socket closed.
  const fake = await startFakeScp({ kind: 'abort-after-bytes', bytes: 1000 });
  t.teardown(() => fake.stop());
  for (let round = 0; round < 8; round += 1) {
    const results = await storeObjects({ destination: destinationFor(fake.port), callingAeTitle, objects: lazyObjects(`aborted-${round}`), log });
    t.equal(results[0]?.outcome, 'transient', `association ${round} failed`);
  }
  await new Promise((resolve) => setTimeout(resolve, 200));

  const directory = await outputDirectory('shared-buffers');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa', '+uf'] });
  t.teardown(() => peer.stop());
  // Reads that fail, as for a file gone from the spool: their reads are over, so their buffers come back too.
  const { sopClassUid, sopInstanceUid, transferSyntaxUid } = smallJpeg;
  const missing: LazyStoreObject = {
    id: 'missing',
    sopClassUid,
    sopInstanceUid,
    transferSyntaxUid,
    bytes: smallJpeg.part10.length,
    read: async (into) => {
      if (into !== undefined) seen.push(into.buffer);
      throw Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
    },
  };
  for (let round = 0; round < 8; round += 1) {
    const results = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: [missing], log });
    t.equal(results[0]?.outcome, 'permanent', `read ${round} failed`);
  }

  const before = seen.length;
  const results = await storeObjects({ destination: destinationFor(port), callingAeTitle, objects: lazyObjects('after'), log });
  t.same(results.map((result) => result.outcome), ['stored', 'stored']);
  const after = seen.slice(before);
  t.equal(after.length, 2, 'both objects were read into a given buffer');
  t.ok(after.every((memory) => memory instanceof SharedArrayBuffer), 'in shared memory: failed sends gave their buffers back');
  const sizes = new Map<number, Set<ArrayBufferLike>>();
  for (const memory of seen) sizes.set(memory.byteLength, (sizes.get(memory.byteLength) ?? new Set()).add(memory));
  for (const [length, buffers] of sizes) t.ok(buffers.size <= SHARED_BUFFERS_PER_SIZE, `${buffers.size} shared buffers of ${length} bytes for ${seen.length} reads`);
});

t.test('store-scu stops waiting for a read that hangs once the association is aborted', async (t) => {
  const directory = await outputDirectory('hanging-read');
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['+xa', '+uf'] });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();
  const { sopClassUid, sopInstanceUid, transferSyntaxUid } = secondJpeg;
  // A read that never ends, as on a stalled disk.
  const hanging: LazyStoreObject = { id: 'hanging', sopClassUid, sopInstanceUid, transferSyntaxUid, read: () => new Promise<Buffer>(() => undefined) };
  const controller = new AbortController();
  const storing = storeObjects({
    destination: destinationFor(port),
    callingAeTitle,
    objects: [{ ...smallJpeg, id: 'first' }, hanging],
    log,
    signal: controller.signal,
    // The first result is passed on while the read hangs, and the sender then stops.
    onResult: (result) => {
      if (result.id === 'first') setTimeout(() => controller.abort(), 100);
    },
  });
  const results = await storing;
  t.same(results.map((result) => [result.id, result.outcome]), [['first', 'stored'], ['hanging', 'transient']]);
  t.equal(results[1]?.reason, `not sent: association with 127.0.0.1:${port} ended before the object was sent`);
});

t.test('read-ahead depth by object size', async (t) => {
  // A fake that never responds holds the first object in flight, so the reads
  // started meanwhile are those read ahead.
  const fake = await startFakeScp({ kind: 'never-answer' });
  t.teardown(() => fake.stop());
  const { log } = memoryLogger();
  const readsWhileFirstInFlight = async (bytes: number): Promise<number> => {
    let reads = 0;
    const objects: LazyStoreObject[] = [1, 2, 3, 4, 5].map((index) => ({
      ...readingInto(smallJpeg, `obj-${index}`, []),
      // The recorded size decides how far ahead an object is read. The bytes read are the small still's.
      bytes,
      read: async () => {
        reads += 1;
        return Buffer.from(smallJpeg.part10);
      },
    }));
    const abort = new AbortController();
    const sending = storeObjects({ destination: destinationFor(fake.port), callingAeTitle, objects, log, signal: abort.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    abort.abort();
    await sending;
    return reads;
  };

  t.equal(await readsWhileFirstInFlight(smallJpeg.part10.length), 3, 'the first small object and the two after it');
  t.equal(await readsWhileFirstInFlight(3 * 1024 * 1024), 2, 'a large object and the one after it');
});
