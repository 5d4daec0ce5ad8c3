import { once } from 'node:events';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dimse from 'dcmjs-dimse';
import type { association, requests, responses } from 'dcmjs-dimse';
import t, { type Test } from 'tap';
import { createUidGenerator } from '../../src/dicom/uid.js';
import {
  CommitmentRequester,
  type CommitmentRequestedEvent,
  type CommitmentSupportChangedEvent,
} from '../../src/pacs/commitment-requester.js';
import { storageCommitmentSopClassUid, storageCommitmentSopInstanceUid } from '../../src/pacs/commitment-messages.js';
import { CommitmentTracker, type ObjectCommittedEvent } from '../../src/pacs/commitment-tracker.js';
import type { StorageCommitmentConfig } from '../../src/profile/schema.js';
import { freePort } from '../helpers/ports.js';
import { destinationFor, memoryLogger } from './fixtures.js';
import { MemoryCommitmentQueue, secondaryCaptureUid, testUidRoot, waitUntil } from './commitment-fixtures.js';
import { startStorescp } from './peers.js';

const { Scp, constants } = dimse;
// The library enables every level of the shared loglevel root logger when it loads.
dimse.log.setLevel('silent', false);
const destinationName = 'test-pacs';

let workDirectory = '';

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-commitment-peers-'));
});
t.teardown(() => rm(workDirectory, { recursive: true, force: true }));

/** What the fake Storage Commitment SCP does with an N-ACTION request. */
type FakeBehaviour = { kind: 'report-same-association' } | { kind: 'status'; status: number };

interface FakeCommitmentScp {
  port: number;
  /** Transaction UIDs of the N-ACTION requests received. */
  transactions: string[];
  /** Status of each N-EVENT-REPORT response received. */
  reportStatuses: number[];
  associations: number;
  stop(): Promise<void>;
}

/**
 * Starts a dcmjs-dimse Scp on 127.0.0.1 that plays a PACS's Storage
 * Commitment SCP, for behaviour that no available real peer shows:
 * Orthanc 1.10 always reports on a new association, and DCMTK 3.6.7 has no
 * Storage Commitment SCP.
 */
async function startFakeCommitmentScp(behaviour: FakeBehaviour): Promise<FakeCommitmentScp> {
  const sockets = new Set<net.Socket>();
  const state = { transactions: [] as string[], reportStatuses: [] as number[], associations: 0 };

  class Fake extends Scp {
    override associationRequested(requested: InstanceType<typeof association.Association>): void {
      for (const { context } of requested.getPresentationContexts()) {
        context.setResult(constants.PresentationContextResult.Accept, context.getTransferSyntaxUids()[0]);
      }
      state.associations += 1;
      this.sendAssociationAccept();
    }

    override nActionRequest(
      request: InstanceType<typeof requests.NActionRequest>,
      callback: (response: InstanceType<typeof responses.NActionResponse>) => void,
    ): void {
      const elements = request.getDataset()?.getElements() ?? {};
      const transactionUid = String(elements.TransactionUID);
      state.transactions.push(transactionUid);
      const response = dimse.responses.NActionResponse.fromRequest(request);
      response.setStatus(behaviour.kind === 'status' ? behaviour.status : 0x0000);
      callback(response);
      if (behaviour.kind !== 'report-same-association') return;

      // The result follows on the same association, before the requester releases it.
      setTimeout(() => {
        const report = new dimse.requests.NEventReportRequest(storageCommitmentSopClassUid, storageCommitmentSopInstanceUid, 1);
        report.setDataset(new dimse.Dataset({ TransactionUID: transactionUid, ReferencedSOPSequence: elements.ReferencedSOPSequence }, '1.2.840.10008.1.2.1'));
        report.on('response', (reply: InstanceType<typeof responses.NEventReportResponse>) => state.reportStatuses.push(reply.getStatus()));
        this.sendRequests(report);
      }, 50);
    }

    override associationReleaseRequested(): void {
      this.sendAssociationReleaseResponse();
    }
  }

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    new Fake(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address() as net.AddressInfo;
  return {
    port: address.port,
    get transactions() {
      return state.transactions;
    },
    get reportStatuses() {
      return state.reportStatuses;
    },
    get associations() {
      return state.associations;
    },
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

const commitmentConfig: StorageCommitmentConfig = {
  enabled: true,
  batchSize: 10,
  requestDelayMs: 0,
  resultTimeoutMs: 60_000,
  reportWaitMs: 3_000,
  unsupportedRetryMs: 60_000,
};

async function startRequester(t: Test, port: number, calledAeTitle: string, config: Partial<StorageCommitmentConfig> = {}) {
  const directory = await mkdtemp(join(workDirectory, 'commitments-'));
  const { log, lines } = memoryLogger();
  const queue = new MemoryCommitmentQueue();
  const tracker = new CommitmentTracker({ directory, queue, log });
  await tracker.open();
  const destination = destinationFor(port, { calledAeTitle, storageCommitment: { ...commitmentConfig, ...config }, retry: { initialMs: 100, maxMs: 500, multiplier: 2 } });
  const requester = new CommitmentRequester({ destination, callingAeTitle: 'ENDOCAP', queue, tracker, newUid: createUidGenerator(testUidRoot), log });
  const events = {
    requested: [] as CommitmentRequestedEvent[],
    support: [] as CommitmentSupportChangedEvent[],
    committed: [] as ObjectCommittedEvent[],
  };
  requester.on('commitmentRequested', (event) => events.requested.push(event));
  requester.on('commitmentSupportChanged', (event) => events.support.push(event));
  tracker.on('objectCommitted', (event) => events.committed.push(event));
  t.teardown(() => requester.stop());
  return { queue, tracker, requester, events, lines };
}

t.test('result on same association commits objects', async (t) => {
  const peer = await startFakeCommitmentScp({ kind: 'report-same-association' });
  t.teardown(() => peer.stop());
  const { queue, tracker, requester, events, lines } = await startRequester(t, peer.port, 'FAKEPACS');
  queue.add('obj-1', '1.2.3.1', destinationName);
  queue.add('obj-2', '1.2.3.2', destinationName);

  requester.start();
  await waitUntil(() => events.committed.length === 2, 'two objectCommitted events');

  t.equal(peer.transactions.length, 1, 'one N-ACTION for both objects');
  t.same(events.requested.map((event) => [event.transactionUid, event.objects]), [[peer.transactions[0], 2]]);
  t.same(events.committed.map((event) => event.id).sort(), ['obj-1', 'obj-2']);
  t.equal(queue.state('obj-1', destinationName), 'committed');
  t.equal(queue.state('obj-2', destinationName), 'committed');
  await waitUntil(() => peer.reportStatuses.length === 1, 'the N-EVENT-REPORT response');
  t.same(peer.reportStatuses, [0x0000], 'the report was answered with success');
  t.same(tracker.pending(destinationName), [], 'the transaction is settled');
  t.match(lines(), /"origin":"same-association".*"msg":"commitment result applied"/);
  // The requester logs the request once its association is released, which can come after the result.
  await waitUntil(() => /"msg":"commitment requested"/.test(lines()), 'the commitment requested log line');
  t.match(lines(), /"reportedHere":true.*"msg":"commitment requested"/);
});

t.test('storescp without commitment leaves objects stored', async (t) => {
  const port = await freePort();
  const directory = join(workDirectory, 'storescp');
  await mkdir(directory);
  // -v logs every association, which lets the test count them.
  const peer = await startStorescp({ port, aeTitle: 'STORESCP', outputDirectory: directory, args: ['-v'] });
  t.teardown(() => peer.stop());
  const { queue, tracker, requester, events, lines } = await startRequester(t, port, 'STORESCP', { unsupportedRetryMs: 60_000 });
  queue.add('obj-1', '1.2.3.1', destinationName);

  requester.start();
  await waitUntil(() => events.support.length === 1, 'a commitmentSupportChanged event');
  // More objects are stored and the requester is woken: it must not ask again before the retry time.
  queue.add('obj-2', '1.2.3.2', destinationName);
  for (let index = 0; index < 5; index += 1) {
    requester.wake();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }

  t.equal(events.support[0]?.supported, false);
  t.equal(events.support[0]?.reason, `127.0.0.1:${port} did not accept the Storage Commitment Push Model SOP Class`);
  t.equal(events.support.length, 1, 'reported once');
  // The helper's port probe also shows up as "Association Received", so acknowledged associations are counted.
  t.equal(peer.output().match(/Association Acknowledged/g)?.length, 1, 'storescp saw one association');
  t.match(peer.output(), /no valid presentation contexts/, 'storescp accepted no Storage Commitment context');
  t.equal(queue.state('obj-1', destinationName), 'stored', 'stored, never committed');
  t.equal(queue.state('obj-2', destinationName), 'stored');
  t.same(tracker.pending(destinationName), [], 'the refused transaction is not kept');
  t.equal(lines().match(/"msg":"destination rejected storage commitment, objects stay stored"/g)?.length, 1, 'one warning');
});

t.test('rejected commitment retried with backoff', async (t) => {
  // 0x0123 is "no such action": this PACS does not commit.
  const peer = await startFakeCommitmentScp({ kind: 'status', status: 0x0123 });
  t.teardown(() => peer.stop());
  const { queue, requester, events, lines } = await startRequester(t, peer.port, 'FAKEPACS', { unsupportedRetryMs: 200 });
  queue.add('obj-1', '1.2.3.1', destinationName);

  requester.start();
  await waitUntil(() => peer.transactions.length >= 3, 'three N-ACTION requests');

  t.same(events.support, [{ destination: destinationName, supported: false, reason: 'N-ACTION failed with status 0x0123' }], 'reported once, not at every refusal');
  t.equal(queue.state('obj-1', destinationName), 'stored');
  t.equal(new Set(peer.transactions).size, peer.transactions.length, 'each request has a new Transaction UID');
  t.equal(lines().match(/"msg":"destination rejected storage commitment, objects stay stored"/g)?.length, 1);
});

t.test('resource limitation is retried', async (t) => {
  const peer = await startFakeCommitmentScp({ kind: 'status', status: 0x0213 });
  t.teardown(() => peer.stop());
  const { queue, tracker, requester, events, lines } = await startRequester(t, peer.port, 'FAKEPACS');
  queue.add('obj-1', '1.2.3.1', destinationName);

  requester.start();
  await waitUntil(() => peer.transactions.length >= 2, 'a second N-ACTION request');

  t.same(events.support, [], 'a transient failure is not a missing feature');
  t.same(tracker.pending(destinationName).map((transaction) => transaction.transactionUid).filter((uid) => uid === peer.transactions[0]), [], 'the refused transaction is dropped');
  t.match(lines(), /"reason":"N-ACTION failed with status 0x0213".*"msg":"commitment request failed, will retry"/);
});

t.test('timed out result is requested again', async (t) => {
  // The fake accepts every request and never reports.
  const peer = await startFakeCommitmentScp({ kind: 'status', status: 0x0000 });
  t.teardown(() => peer.stop());
  const { queue, tracker, requester, events, lines } = await startRequester(t, peer.port, 'FAKEPACS', { resultTimeoutMs: 400, reportWaitMs: 0 });
  queue.add('obj-1', '1.2.3.1', destinationName);

  requester.start();
  await waitUntil(() => peer.transactions.length >= 2, 'a second N-ACTION request');

  const [first, second] = peer.transactions;
  t.not(first, second, 'the second request has a new Transaction UID');
  t.match(lines(), new RegExp(`"transactionUid":"${first?.replaceAll('.', '\\.')}".*"msg":"commitment result timed out, asking again"`));
  t.ok(tracker.pending(destinationName).some((transaction) => transaction.transactionUid === first), 'the first transaction stays valid');

  // The result of the first request arrives late, and still counts.
  await tracker.applyResult({ transactionUid: first ?? '', eventTypeId: 1, committed: [{ sopClassUid: secondaryCaptureUid, sopInstanceUid: '1.2.3.1' }], failed: [] }, 'listener');
  t.equal(queue.state('obj-1', destinationName), 'committed');
  t.same(events.committed.map((event) => event.transactionUid), [first]);
  // The requester's next look at the queue drops the transactions the result settled.
  requester.wake();
  await waitUntil(() => tracker.pending(destinationName).length === 0, 'no pending transaction');
});
