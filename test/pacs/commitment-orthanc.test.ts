import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createUidGenerator } from '../../src/dicom/uid.js';
import { CommitmentListener, type AssociationRejectedEvent } from '../../src/pacs/commitment-listener.js';
import { CommitmentRequester, type CommitmentRequestedEvent } from '../../src/pacs/commitment-requester.js';
import { CommitmentTracker, type CommitmentFailedEvent, type ObjectCommittedEvent } from '../../src/pacs/commitment-tracker.js';
import { Sender } from '../../src/pacs/sender.js';
import type { CommitmentListenerConfig, DestinationConfig } from '../../src/profile/schema.js';
import { Spool } from '../../src/spool/spool.js';
import { startOrthanc, type OrthancPeer } from '../helpers/orthanc.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { destinationFor, makeJpegObject, memoryLogger, patientMarkers, storeObjectFromFile } from './fixtures.js';
import { testUidRoot, waitUntil } from './commitment-fixtures.js';

const callingAeTitle = 'ENDOCAP';
const destinationName = 'orthanc';

let workDirectory = '';
let listenerPort = 0;
let orthanc: OrthancPeer | undefined;
let objectCount = 0;

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-commitment-orthanc-'));
  listenerPort = await freePort();
  // Orthanc sends each commitment result on a new association to the address
  // of the modality whose AE title asked for it.
  orthanc = await startOrthanc({
    modalities: { endocap: { AET: callingAeTitle, Host: '127.0.0.1', Port: listenerPort, AllowStorageCommitment: true } },
  });
});

t.teardown(async () => {
  await orthanc?.stop();
  await rm(workDirectory, { recursive: true, force: true });
});

function peer(): OrthancPeer {
  if (!orthanc) throw new Error('Orthanc did not start');
  return orthanc;
}

interface OrthancJob {
  ID: string;
  Type: string;
  State: string;
  Content: { TransactionUid?: string };
}

/** Orthanc's job that handles the commitment request with this Transaction UID. */
async function commitmentJob(transactionUid: string): Promise<OrthancJob | undefined> {
  const jobs = await peer().get<OrthancJob[]>('/jobs?expand');
  return jobs.find((job) => job.Type === 'StorageCommitmentScp' && job.Content.TransactionUid === transactionUid);
}

async function hasInstance(sopInstanceUid: string): Promise<boolean> {
  const found = await peer().post<string[]>('/tools/find', { Level: 'Instance', Query: { SOPInstanceUID: sopInstanceUid } });
  return found.length === 1;
}

interface PipelineOptions {
  spoolDirectory: string;
  /** Starts the listener on the port Orthanc reports to. */
  listen?: boolean;
  allowedPeers?: CommitmentListenerConfig['allowedPeers'];
  resultTimeoutMs?: number;
}

/** Starts what the daemon wires for one destination with commitment: spool, sender, tracker, listener, requester. */
async function startPipeline(t: Test, options: PipelineOptions) {
  const { log, lines } = memoryLogger();
  const destination: DestinationConfig = destinationFor(peer().dicomPort, {
    name: destinationName,
    calledAeTitle: peer().aeTitle,
    storageCommitment: {
      enabled: true,
      batchSize: 10,
      // Objects stored by one association are then asked for in one transaction.
      requestDelayMs: 300,
      resultTimeoutMs: options.resultTimeoutMs ?? 60_000,
      reportWaitMs: 0,
      unsupportedRetryMs: 60_000,
    },
  });
  // A retention keeps committed objects on disk, so the test can read their state.
  const spool = new Spool({ directory: options.spoolDirectory, destinations: [{ name: destinationName, commitment: true }], log, retentionHours: 1 });
  await spool.open();
  const sender = new Sender({ destination, callingAeTitle, queue: spool, log });
  const tracker = new CommitmentTracker({ directory: join(options.spoolDirectory, 'commitments'), queue: spool, log });
  await tracker.open();
  const listener = new CommitmentListener({
    config: { host: '127.0.0.1', port: listenerPort, allowedPeers: options.allowedPeers ?? [{ aeTitle: peer().aeTitle, host: '127.0.0.1' }] },
    aeTitle: callingAeTitle,
    sink: tracker,
    log,
  });
  const requester = new CommitmentRequester({ destination, callingAeTitle, queue: spool, tracker, newUid: createUidGenerator(testUidRoot), log });

  const events = {
    requested: [] as CommitmentRequestedEvent[],
    committed: [] as ObjectCommittedEvent[],
    failed: [] as CommitmentFailedEvent[],
    rejected: [] as AssociationRejectedEvent[],
  };
  requester.on('commitmentRequested', (event) => events.requested.push(event));
  tracker.on('objectCommitted', (event) => events.committed.push(event));
  tracker.on('commitmentFailed', (event) => events.failed.push(event));
  listener.on('associationRejected', (event) => events.rejected.push(event));
  // As in the daemon: a stored object is due for commitment, a failed commitment is due for sending.
  sender.on('objectStored', () => requester.wake());
  tracker.on('commitmentFailed', () => sender.wake());

  sender.start();
  if (options.listen ?? true) await listener.start();
  requester.start();

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await requester.stop();
    await listener.stop();
    await sender.stop();
    await spool.close();
  };
  t.teardown(stop);
  const state = (id: string): string | undefined => spool.get(id)?.deliveries[destinationName]?.state;
  return { spool, sender, tracker, requester, events, lines, stop, state };
}

/** Makes a new JPEG object (with new UIDs) and adds it to the spool. */
async function addObject(spool: Spool): Promise<{ id: string; sopInstanceUid: string }> {
  objectCount += 1;
  const path = await makeJpegObject(workDirectory, `still-${objectCount}`);
  const object = await storeObjectFromFile(`still-${objectCount}`, path);
  const entry = await spool.add(await readFile(path), {
    sopClassUid: object.sopClassUid,
    sopInstanceUid: object.sopInstanceUid,
    transferSyntaxUid: object.transferSyntaxUid,
  });
  return { id: entry.id, sopInstanceUid: entry.sopInstanceUid };
}

t.test('orthanc commits stored objects', async (t) => {
  const spoolDirectory = await mkdtemp(join(workDirectory, 'spool-'));
  const pipeline = await startPipeline(t, { spoolDirectory });

  const objects = [await addObject(pipeline.spool), await addObject(pipeline.spool)];
  pipeline.sender.wake();
  await waitUntil(() => objects.every((object) => pipeline.state(object.id) === 'committed'), 'both objects committed');

  for (const object of objects) t.ok(await hasInstance(object.sopInstanceUid), `Orthanc holds ${object.id}`);
  t.same(pipeline.events.committed.map((event) => event.id).sort(), objects.map((object) => object.id).sort());
  t.same(pipeline.events.failed, []);
  t.ok(pipeline.events.requested.length >= 1, 'commitment was requested');
  t.same(await readdir(join(spoolDirectory, 'commitments')), [], 'no transaction is left pending');
  t.match(pipeline.lines(), /"origin":"listener".*"msg":"commitment result applied"/, 'Orthanc reported on a new association');
  for (const marker of patientMarkers) t.notOk(pipeline.lines().includes(marker), `log contains no ${marker}`);
});

t.test('orthanc failure requeues and resends object', async (t) => {
  const spoolDirectory = await mkdtemp(join(workDirectory, 'spool-'));
  const pipeline = await startPipeline(t, { spoolDirectory });

  // Recorded as stored, but never sent: Orthanc does not have it and reports a failure.
  const missing = await addObject(pipeline.spool);
  await pipeline.spool.markStored(missing.id, destinationName, 0);
  pipeline.requester.wake();

  await waitUntil(() => pipeline.events.failed.length >= 1, 'a commitmentFailed event');
  t.same(pipeline.events.failed[0], {
    id: missing.id,
    destination: destinationName,
    transactionUid: pipeline.events.requested[0]?.transactionUid,
    failureReason: 0x0112,
    reason: 'commitment failed: no such object instance (0x0112)',
  });

  // Queued again, the object is sent, and its commitment asked again in a new transaction.
  await waitUntil(() => pipeline.state(missing.id) === 'committed', 'the resent object committed');
  t.ok(await hasInstance(missing.sopInstanceUid), 'Orthanc now holds the object');
  t.ok(pipeline.events.requested.length >= 2, 'commitment was asked again');
  t.not(pipeline.events.committed[0]?.transactionUid, pipeline.events.failed[0]?.transactionUid, 'under a new Transaction UID');
});

t.test('orthanc result arrives after restart', async (t) => {
  // Orthanc reports only once, on a new association, right after it checked the
  // objects. The first run asks for commitment while nothing listens, so that
  // report fails. The run then stops, as if the box was switched off, with the
  // transaction recorded on disk. After the restart the Orthanc job is
  // resubmitted: its result, for the transaction of the first run, reaches the
  // new listener. The second run must not ask again on its own, so its result
  // time limit is long and the Transaction UID proves which request was answered.
  const spoolDirectory = await mkdtemp(join(workDirectory, 'spool-'));
  const first = await startPipeline(t, { spoolDirectory, listen: false, resultTimeoutMs: 600_000 });
  const objects = [await addObject(first.spool), await addObject(first.spool)];
  first.sender.wake();
  await waitUntil(() => first.events.requested.length === 1, 'the first commitment request');
  const transactionUid = first.events.requested[0]?.transactionUid ?? '';
  await waitFor(async () => (await commitmentJob(transactionUid))?.State === 'Failure', 20_000, 'Orthanc failing to report to a closed port');
  await first.stop();

  t.equal(first.events.requested[0]?.objects, 2, 'one request named both objects');
  t.same(await readdir(join(spoolDirectory, 'commitments')), [`${transactionUid}.json`], 'the transaction survived the stop');

  const second = await startPipeline(t, { spoolDirectory, resultTimeoutMs: 600_000 });
  t.same(objects.map((object) => second.state(object.id)), ['stored', 'stored'], 'stored, waiting for commitment after the restart');
  const job = await commitmentJob(transactionUid);
  if (!job) throw new Error('Orthanc has no commitment job');
  await peer().post(`/jobs/${job.ID}/resubmit`, {});

  await waitUntil(() => objects.every((object) => second.state(object.id) === 'committed'), 'both objects committed after the restart');
  t.same(
    second.events.committed.map((event) => event.transactionUid),
    [transactionUid, transactionUid],
    'committed by the result of the request sent before the restart',
  );
  t.same(second.events.requested, [], 'the second run did not ask again');
  t.same(await readdir(join(spoolDirectory, 'commitments')), []);
});

t.test('orthanc report from peer not allowed is rejected', async (t) => {
  const spoolDirectory = await mkdtemp(join(workDirectory, 'spool-'));
  // Orthanc calls as ORTHANC; this listener only accepts OTHERPACS.
  const pipeline = await startPipeline(t, { spoolDirectory, allowedPeers: [{ aeTitle: 'OTHERPACS', host: '127.0.0.1' }] });
  const object = await addObject(pipeline.spool);
  pipeline.sender.wake();

  await waitUntil(() => pipeline.events.rejected.length === 1, 'a rejected association');
  t.same(pipeline.events.rejected[0], {
    callingAeTitle: peer().aeTitle,
    calledAeTitle: callingAeTitle,
    address: '127.0.0.1',
    reason: 'calling AE title and address match no allowed peer',
  });
  const transactionUid = pipeline.events.requested[0]?.transactionUid ?? '';
  await waitFor(async () => (await commitmentJob(transactionUid))?.State === 'Failure', 20_000, 'Orthanc failing to report');
  t.equal(pipeline.state(object.id), 'stored', 'stored, not committed');
  t.same(pipeline.events.committed, []);
});
