/**
 * Each defect of dcmjs-dimse 0.3.3 that endocap works around, shown twice:
 * the same scenario through the library's own Client or Server, asserting the
 * defect, and through endocap's code, asserting the fix. When a library
 * upgrade fixes a defect, its library assertion fails, and the workaround can
 * be reviewed.
 */
import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import dimse from 'dcmjs-dimse';
import t, { type Test } from 'tap';
import { DemoDicomReceiver } from '../../src/demo/dicom-receiver.js';
import { DemoMqttBroker } from '../../src/demo/mqtt-broker.js';
import { CommitmentListener } from '../../src/pacs/commitment-listener.js';
import type { CommitmentResultSink } from '../../src/pacs/commitment-tracker.js';
import { cEchoRequest } from '../../src/pacs/dimse-command.js';
import { verificationSopClassUid } from '../../src/pacs/dimse.js';
import { find, modalityWorklistFind } from '../../src/pacs/find-scu.js';
import { ScuAssociation } from '../../src/pacs/scu-association.js';
import { storeObjects, type StoreObject } from '../../src/pacs/store-scu.js';
import { freePort } from '../helpers/ports.js';
import { destinationFor, makeJpegObject, makeUncompressedObject, memoryLogger, storeObjectFromFile } from './fixtures.js';
import { startFakeScp, startStorescp, startWorklistScp, type FakeBehaviour } from './peers.js';

const run = promisify(execFile);
const { Client, Dataset, Scp, Server, requests } = dimse;
type LibraryRequest = InstanceType<typeof requests.CEchoRequest> | InstanceType<typeof requests.CFindRequest> | InstanceType<typeof requests.CStoreRequest>;

/** How long a library client is watched for a reaction that never comes; the defects last 30 s or more. */
const watchMs = 2_000;

let workDirectory = '';
let explicitPath = '';
let explicitObject: StoreObject;

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-defects-'));
  const jpegPath = await makeJpegObject(workDirectory, 'still');
  explicitPath = await makeUncompressedObject(jpegPath, join(workDirectory, 'explicit.dcm'));
  explicitObject = await storeObjectFromFile('obj-explicit', explicitPath);
  dimse.log.setLevel('silent', false);
});

t.teardown(() => rm(workDirectory, { recursive: true, force: true }));

interface LibraryRun {
  /** Status of each response, in order. */
  statuses: number[];
  /** For each 'done' event of the request: how many responses had arrived. */
  doneAfter: number[];
  networkErrors: string[];
  closed: boolean;
}

/** Sends `request` with the library's Client and records what it reports until it closes or `watchMs` passes. */
async function runLibraryClient(port: number, calledAeTitle: string, request: LibraryRequest): Promise<LibraryRun> {
  const outcome: LibraryRun = { statuses: [], doneAfter: [], networkErrors: [], closed: false };
  const client = new Client();
  request.on('response', (response: { getStatus(): number }) => {
    outcome.statuses.push(response.getStatus());
  });
  request.on('done', () => {
    outcome.doneAfter.push(outcome.statuses.length);
  });
  client.addRequest(request);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, watchMs);
    client.on('networkError', (error: Error) => {
      outcome.networkErrors.push(error.message);
    });
    client.on('closed', () => {
      outcome.closed = true;
      clearTimeout(timer);
      resolve();
    });
    client.send('127.0.0.1', port, 'ENDOCAP', calledAeTitle);
  });
  return outcome;
}

async function startFake(t: Test, behaviour: FakeBehaviour) {
  const fake = await startFakeScp(behaviour);
  t.teardown(() => fake.stop());
  return fake;
}

function libraryStoreRequest(): InstanceType<typeof requests.CStoreRequest> {
  const dataset = Dataset.fromFile(explicitPath);
  if (!dataset) throw new Error(`dcmjs-dimse could not read ${explicitPath}`);
  return new requests.CStoreRequest(dataset);
}

t.test('pending with warning FF01 is not final', async (t) => {
  const directory = join(workDirectory, 'worklist');
  const worklist = await startWorklistScp({
    port: await freePort(),
    aeTitle: 'WLMSCP',
    directory,
    entries: [1, 2, 3].map((index) => ({ patientName: `DOE^${index}`, patientId: `ID${index}`, accessionNumber: `A${index}`, studyInstanceUid: `1.2.826.0.1.3680043.10.1437.6.${index}`, scheduledProcedureStepId: `S${index}` })),
  });
  t.teardown(() => worklist.stop());
  // PatientAge is an optional key that wlmscpfs does not support, so it returns FF01 with each match.
  const keys = { PatientName: '', PatientID: '', PatientAge: '' };

  const library = await runLibraryClient(worklist.port, 'WLMSCP', requests.CFindRequest.createWorklistFindRequest(keys));
  t.equal(library.statuses[0], 0xff01, 'library: wlmscpfs answered FF01');
  // A caller that waits for 'done' has one match. The client then sends
  // A-RELEASE-RQ while matches still arrive, which sometimes ends in ECONNRESET.
  t.equal(library.doneAfter[0], 1, 'library: the request ended at the first pending response');

  const { log } = memoryLogger();
  const ours = await find({ destination: destinationFor(worklist.port, { calledAeTitle: 'WLMSCP' }), callingAeTitle: 'ENDOCAP', sopClassUid: modalityWorklistFind, identifier: keys, log });
  t.equal(ours.status, 0, 'endocap: the C-FIND ended with success');
  t.equal(ours.matches.length, 3, 'endocap: every match arrived');
});

t.test('peer A-ABORT is reported', async (t) => {
  const libraryFake = await startFake(t, { kind: 'abort-during-data' });
  const library = await runLibraryClient(libraryFake.port, 'FAKE', libraryStoreRequest());
  t.equal(libraryFake.aborts, 1, 'library: the fake sent A-ABORT');
  t.same(library.networkErrors, [], 'library: no error reported');
  t.equal(library.closed, false, 'library: the client did not close');
  t.same(library.statuses, [], 'library: the request neither completed nor failed');

  const oursFake = await startFake(t, { kind: 'abort-during-data' });
  const { log } = memoryLogger();
  // A 60 s request timeout: only the A-ABORT can end the call early.
  const [result] = await storeObjects({ destination: destinationFor(oursFake.port, { requestTimeoutMs: 60_000 }), callingAeTitle: 'ENDOCAP', objects: [explicitObject], log });
  t.equal(result?.outcome, 'transient');
  t.equal(result?.reason, `association aborted by 127.0.0.1:${oursFake.port}`, 'endocap: the abort is the reason');
});

t.test('request without accepted context completes', async (t) => {
  const libraryFake = await startFake(t, { kind: 'reject-contexts' });
  const library = await runLibraryClient(libraryFake.port, 'FAKE', new requests.CEchoRequest());
  t.equal(library.closed, true, 'library: the client released and closed');
  t.same(library.statuses, [], 'library: no response');
  t.same(library.doneAfter, [], 'library: no done event, so a caller waiting on the request waits forever');
  t.same(library.networkErrors, [], 'library: and no error');

  const oursFake = await startFake(t, { kind: 'reject-contexts' });
  const { log } = memoryLogger();
  const association = await ScuAssociation.open({
    host: '127.0.0.1',
    port: oursFake.port,
    callingAeTitle: 'ENDOCAP',
    calledAeTitle: 'FAKE',
    connectTimeoutMs: 2_000,
    associationTimeoutMs: 2_000,
    contexts: [{ abstractSyntaxUid: verificationSopClassUid, transferSyntaxUids: ['1.2.840.10008.1.2'] }],
    log,
  });
  t.teardown(() => association.release(2_000));
  await t.rejects(
    association.send({ abstractSyntaxUid: verificationSopClassUid, command: cEchoRequest() }, { timeoutMs: 60_000, label: 'C-ECHO' }),
    { code: 'PACS_NO_PRESENTATION_CONTEXT', retryable: false, message: `C-ECHO not sent: 127.0.0.1:${oursFake.port} accepted no presentation context for ${verificationSopClassUid}` },
    'endocap: the request fails at once',
  );
});

t.test('request without response times out', async (t) => {
  const libraryFake = await startFake(t, { kind: 'never-answer' });
  const library = await runLibraryClient(libraryFake.port, 'FAKE', libraryStoreRequest());
  t.equal(libraryFake.received, 1, 'library: the request arrived');
  t.same(library.statuses, [], 'library: no response');
  t.same(library.networkErrors, [], 'library: no time-out within the watch');
  t.equal(library.closed, false);

  const oursFake = await startFake(t, { kind: 'never-answer' });
  const { log } = memoryLogger();
  const [result] = await storeObjects({ destination: destinationFor(oursFake.port, { requestTimeoutMs: 1_000 }), callingAeTitle: 'ENDOCAP', objects: [explicitObject], log });
  t.equal(result?.outcome, 'transient');
  t.equal(result?.reason, `C-STORE of object obj-explicit to 127.0.0.1:${oursFake.port} got no response within 1000 ms`, 'endocap: a per-request time-out');
});

/** Node keeps the TCP_NODELAY state it applied to a socket's handle under this symbol. */
function noDelayOf(socket: net.Socket): boolean {
  const symbol = Object.getOwnPropertySymbols(socket).find((entry) => entry.description === 'kSetNoDelay');
  return symbol !== undefined && (socket as unknown as Record<symbol, unknown>)[symbol] === true;
}

t.test('Nagle algorithm is off', async (t) => {
  const directory = join(workDirectory, 'nodelay');
  await mkdir(directory);
  const port = await freePort();
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory });
  t.teardown(() => peer.stop());

  // The library's Client calls net.connect itself; wrapping it is the only way to see its socket.
  const sockets: net.Socket[] = [];
  const originalConnect = net.connect;
  net.connect = ((...args: Parameters<typeof net.connect>) => {
    const socket = originalConnect(...args);
    sockets.push(socket);
    return socket;
  }) as typeof net.connect;
  let library: LibraryRun;
  try {
    library = await runLibraryClient(port, 'STORESCP', new requests.CEchoRequest());
  } finally {
    net.connect = originalConnect;
  }
  t.same(library.statuses, [0], 'library: C-ECHO succeeded');
  t.equal(sockets.length, 1);
  t.equal(noDelayOf(sockets[0] as net.Socket), false, 'library: Nagle algorithm left on');

  const ours: net.Socket[] = [];
  const { log } = memoryLogger();
  const [result] = await storeObjects({ destination: destinationFor(port), callingAeTitle: 'ENDOCAP', objects: [explicitObject], log, onSocket: (socket) => ours.push(socket) });
  t.equal(result?.outcome, 'stored');
  t.equal(noDelayOf(ours[0] as net.Socket), true, 'endocap: TCP_NODELAY set');
});

/** Lists the local addresses of the TCP listeners on `port`, as `ss` prints them. */
async function boundAddresses(port: number): Promise<string[]> {
  const { stdout } = await run('ss', ['-ltnH', `sport = :${port}`]);
  return stdout
    .trim()
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => line.trim().split(/\s+/)[3] ?? '');
}

t.test('listeners bind loopback only', async (t) => {
  const libraryPort = await freePort();
  const server = new Server(Scp);
  server.listen(libraryPort);
  t.teardown(() => server.close());
  const libraryAddresses = await boundAddresses(libraryPort);
  t.ok(libraryAddresses.length > 0 && libraryAddresses.every((address) => /^(\*|0\.0\.0\.0|\[::\]):\d+$/.test(address)), `library: Server.listen binds every interface: ${libraryAddresses.join(', ')}`);

  const { log } = memoryLogger();
  const receiver = new DemoDicomReceiver({ directory: join(workDirectory, 'demo-receiver'), aeTitle: 'DEMO', log });
  const receiverPort = await receiver.start();
  t.teardown(() => receiver.stop());
  t.same(await boundAddresses(receiverPort), [`127.0.0.1:${receiverPort}`], 'demo DICOM receiver');

  const broker = new DemoMqttBroker();
  const brokerPort = await broker.start();
  t.teardown(() => broker.stop());
  t.same(await boundAddresses(brokerPort), [`127.0.0.1:${brokerPort}`], 'demo MQTT broker');

  const sink: CommitmentResultSink = {
    applyResult: () => Promise.reject(new Error('no result expected in this test')),
  };
  const listenerPort = await freePort();
  const listener = new CommitmentListener({
    config: { host: '127.0.0.1', port: listenerPort, allowedPeers: [{ aeTitle: 'PACS', host: '127.0.0.1' }] },
    aeTitle: 'ENDOCAP',
    sink,
    log,
  });
  await listener.start();
  t.teardown(() => listener.stop());
  t.same(await boundAddresses(listenerPort), [`127.0.0.1:${listenerPort}`], 'Storage Commitment listener binds its configured host');
});

t.test('one copy of dcmjs', async (t) => {
  const root = resolve(import.meta.dirname, '../..');
  t.notOk(existsSync(join(root, 'node_modules/dcmjs-dimse/node_modules/dcmjs')), 'no nested dcmjs under dcmjs-dimse');
  const fromProject = createRequire(join(root, 'package.json')).resolve('dcmjs');
  const fromLibrary = createRequire(createRequire(join(root, 'package.json')).resolve('dcmjs-dimse')).resolve('dcmjs');
  t.equal(realpathSync(fromLibrary), realpathSync(fromProject), 'dcmjs-dimse loads the same dcmjs file as endocap');
});
