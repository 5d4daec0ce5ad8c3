import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { CommitmentListener, type AssociationRejectedEvent } from '../../src/pacs/commitment-listener.js';
import { storageCommitmentSopClassUid, storageCommitmentSopInstanceUid } from '../../src/pacs/commitment-messages.js';
import { CommitmentTracker } from '../../src/pacs/commitment-tracker.js';
import { CommandField, CommandTag } from '../../src/pacs/dimse-command.js';
import { Dataset, TransferSyntax, verificationSopClassUid } from '../../src/pacs/dimse.js';
import { ScuAssociation } from '../../src/pacs/scu-association.js';
import type { CommitmentListenerConfig } from '../../src/profile/schema.js';
import { freePort } from '../helpers/ports.js';
import { memoryLogger } from './fixtures.js';
import { MemoryCommitmentQueue, secondaryCaptureUid } from './commitment-fixtures.js';

const destination = 'pacs';
const listenerAeTitle = 'ENDOCAP';
const pacsAeTitle = 'PACS';

interface ReportOptions {
  port: number;
  callingAeTitle?: string;
  calledAeTitle?: string;
  host?: string;
  eventTypeId?: number;
  elements: Record<string, unknown>;
}

/** Plays the PACS: opens an association to the listener and sends one N-EVENT-REPORT, as Orthanc does. */
async function sendReport(options: ReportOptions): Promise<number> {
  const association = await ScuAssociation.open({
    host: options.host ?? '127.0.0.1',
    port: options.port,
    callingAeTitle: options.callingAeTitle ?? pacsAeTitle,
    calledAeTitle: options.calledAeTitle ?? listenerAeTitle,
    connectTimeoutMs: 2_000,
    associationTimeoutMs: 3_000,
    contexts: [{ abstractSyntaxUid: storageCommitmentSopClassUid, transferSyntaxUids: [TransferSyntax.ExplicitVRLittleEndian] }],
    log: memoryLogger().log,
  });
  try {
    const response = await association.send(
      {
        abstractSyntaxUid: storageCommitmentSopClassUid,
        transferSyntaxUid: TransferSyntax.ExplicitVRLittleEndian,
        command: [
          { tag: CommandTag.AffectedSopClassUid, vr: 'UI', value: storageCommitmentSopClassUid },
          { tag: CommandTag.CommandField, vr: 'US', value: CommandField.NEventReportRq },
          { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0x0000 },
          { tag: CommandTag.AffectedSopInstanceUid, vr: 'UI', value: storageCommitmentSopInstanceUid },
          { tag: CommandTag.EventTypeId, vr: 'US', value: options.eventTypeId ?? 1 },
        ],
        dataset: new Dataset(options.elements, TransferSyntax.ExplicitVRLittleEndian).getDenaturalizedDataset(),
      },
      { timeoutMs: 5_000, label: 'N-EVENT-REPORT' },
    );
    return response.status;
  } finally {
    await association.release(3_000);
  }
}

function reference(sopInstanceUid: string): Record<string, string> {
  return { ReferencedSOPClassUID: secondaryCaptureUid, ReferencedSOPInstanceUID: sopInstanceUid };
}

async function startListener(t: Test, config: Partial<CommitmentListenerConfig> = {}) {
  const directory = await mkdtemp(join(tmpdir(), 'endocap-commitment-listener-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const { log, lines } = memoryLogger();
  const queue = new MemoryCommitmentQueue();
  const tracker = new CommitmentTracker({ directory, queue, log });
  await tracker.open();
  const listener = new CommitmentListener({
    config: { host: '127.0.0.1', port: await freePort(), allowedPeers: [{ aeTitle: pacsAeTitle, host: '127.0.0.1' }], ...config },
    aeTitle: listenerAeTitle,
    sink: tracker,
    log,
  });
  const rejected: AssociationRejectedEvent[] = [];
  listener.on('associationRejected', (event) => rejected.push(event));
  const port = await listener.start();
  t.teardown(() => listener.stop());
  return { port, queue, tracker, listener, rejected, lines };
}

t.test('listener applies result of known transaction', async (t) => {
  const { port, queue, tracker, lines } = await startListener(t);
  await tracker.begin(destination, [queue.add('obj-1', '1.2.3.1', destination)], '1.2.3.100');

  const status = await sendReport({ port, elements: { TransactionUID: '1.2.3.100', ReferencedSOPSequence: [reference('1.2.3.1')] } });

  t.equal(status, 0x0000);
  t.equal(queue.state('obj-1', destination), 'committed');
  t.match(lines(), /"origin":"listener".*"msg":"commitment result applied"/);
});

t.test('listener answers unknown transaction with success', async (t) => {
  const { port, queue, tracker, lines } = await startListener(t);
  await tracker.begin(destination, [queue.add('obj-1', '1.2.3.1', destination)], '1.2.3.100');

  // The report names a real, stored object, but under a transaction this box never started.
  const status = await sendReport({ port, elements: { TransactionUID: '1.2.3.777', ReferencedSOPSequence: [reference('1.2.3.1')] } });

  t.equal(status, 0x0000, 'success, as PS3.4 J.3.3 expects');
  t.equal(queue.state('obj-1', destination), 'stored', 'nothing changed');
  t.same(queue.calls, []);
  t.equal(tracker.pending(destination).length, 1, 'the real transaction is still pending');
  t.match(lines(), /"level":"warn".*"transactionUid":"1\.2\.3\.777".*"msg":"commitment result for unknown transaction ignored"/);
});

t.test('listener rejects malformed report', async (t) => {
  const { port, queue, tracker } = await startListener(t);
  await tracker.begin(destination, [queue.add('obj-1', '1.2.3.1', destination)], '1.2.3.100');

  t.equal(await sendReport({ port, elements: { ReferencedSOPSequence: [reference('1.2.3.1')] } }), 0x0115, 'no Transaction UID: invalid argument value');
  t.equal(await sendReport({ port, eventTypeId: 3, elements: { TransactionUID: '1.2.3.100' } }), 0x0113, 'event type 3: no such event type');
  t.equal(queue.state('obj-1', destination), 'stored');
});

t.test('listener rejects peers not allowed', async (t) => {
  const { port, rejected, lines } = await startListener(t, { allowedPeers: [{ aeTitle: pacsAeTitle, host: '127.0.0.1' }, { aeTitle: 'OTHER', host: '127.0.0.2' }] });
  const elements = { TransactionUID: '1.2.3.100' };

  // Each case gets an A-ASSOCIATE-RJ and the request is never sent.
  await t.rejects(sendReport({ port, callingAeTitle: 'INTRUDER', elements }), { message: 'association rejected (permanent): calling AE title not recognized' });
  // OTHER is allowed only from 127.0.0.2, and this connection comes from 127.0.0.1.
  await t.rejects(sendReport({ port, callingAeTitle: 'OTHER', elements }), { message: 'association rejected (permanent): calling AE title not recognized' });
  await t.rejects(sendReport({ port, calledAeTitle: 'NOT_ENDOCAP', elements }), { message: 'association rejected (permanent): called AE title not recognized' });

  t.same(
    rejected.map((event) => [event.callingAeTitle, event.calledAeTitle, event.address]),
    [
      ['INTRUDER', listenerAeTitle, '127.0.0.1'],
      ['OTHER', listenerAeTitle, '127.0.0.1'],
      [pacsAeTitle, 'NOT_ENDOCAP', '127.0.0.1'],
    ],
  );
  t.match(lines(), /"callingAeTitle":"INTRUDER".*"msg":"commitment association rejected"/);
});

t.test('listener accepts only storage commitment context', async (t) => {
  const { port } = await startListener(t);
  const association = await ScuAssociation.open({
    host: '127.0.0.1',
    port,
    callingAeTitle: pacsAeTitle,
    calledAeTitle: listenerAeTitle,
    connectTimeoutMs: 2_000,
    associationTimeoutMs: 3_000,
    contexts: [
      { abstractSyntaxUid: verificationSopClassUid, transferSyntaxUids: [TransferSyntax.ImplicitVRLittleEndian] },
      { abstractSyntaxUid: secondaryCaptureUid, transferSyntaxUids: [TransferSyntax.ExplicitVRLittleEndian] },
      { abstractSyntaxUid: storageCommitmentSopClassUid, transferSyntaxUids: ['1.2.840.10008.1.2.4.50', TransferSyntax.ImplicitVRLittleEndian] },
    ],
    log: memoryLogger().log,
  });
  t.same(association.acceptedContexts().map((context) => [context.abstractSyntaxUid, context.transferSyntaxUid]), [
    [storageCommitmentSopClassUid, TransferSyntax.ImplicitVRLittleEndian],
  ]);
  await association.release(3_000);
});

t.test('listener binds only configured address', async (t) => {
  const { port } = await startListener(t);
  // 127.0.0.2 is another loopback address; a listener bound to every interface would accept there too.
  const outcome = await new Promise<string>((resolve) => {
    const socket = net.connect({ host: '127.0.0.2', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
  t.equal(outcome, 'ECONNREFUSED');
});

t.test('listener reports busy port', async (t) => {
  const first = await startListener(t);
  const { log } = memoryLogger();
  const second = new CommitmentListener({
    config: { host: '127.0.0.1', port: first.port, allowedPeers: [{ aeTitle: pacsAeTitle, host: '127.0.0.1' }] },
    aeTitle: listenerAeTitle,
    sink: first.tracker,
    log,
  });
  await t.rejects(second.start(), { code: 'COMMITMENT_LISTENER_FAILED', message: `failed to listen on 127.0.0.1:${first.port} for commitment results: EADDRINUSE` });
});
