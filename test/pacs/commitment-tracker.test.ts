import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { describeFailureReason, InvalidEventReportError, parseEventReport } from '../../src/pacs/commitment-messages.js';
import { CommitmentTracker, type CommitmentFailedEvent, type ObjectCommittedEvent } from '../../src/pacs/commitment-tracker.js';
import { memoryLogger } from './fixtures.js';
import { MemoryCommitmentQueue, secondaryCaptureUid } from './commitment-fixtures.js';

const destination = 'pacs';

async function setup(t: Test, options: { now?: () => Date; maxTransactionAgeMs?: number } = {}) {
  const directory = await mkdtemp(join(tmpdir(), 'endocap-commitment-tracker-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const queue = new MemoryCommitmentQueue();
  const { log, lines } = memoryLogger();
  const open = async (): Promise<CommitmentTracker> => {
    const tracker = new CommitmentTracker({ directory, queue, log, ...options });
    await tracker.open();
    return tracker;
  };
  return { directory, queue, lines, open, tracker: await open() };
}

function recordEvents(tracker: CommitmentTracker): { committed: ObjectCommittedEvent[]; failed: CommitmentFailedEvent[] } {
  const events = { committed: [] as ObjectCommittedEvent[], failed: [] as CommitmentFailedEvent[] };
  tracker.on('objectCommitted', (event) => events.committed.push(event));
  tracker.on('commitmentFailed', (event) => events.failed.push(event));
  return events;
}

t.test('tracker records transaction before request', async (t) => {
  const { directory, queue, tracker, open } = await setup(t);
  const entries = [queue.add('obj-1', '1.2.3.1', destination), queue.add('obj-2', '1.2.3.2', destination)];

  const transaction = await tracker.begin(destination, entries, '1.2.3.100');

  const files = await readdir(directory);
  t.same(files, ['1.2.3.100.json'], 'one file named by the Transaction UID');
  const onDisk = JSON.parse(await readFile(join(directory, '1.2.3.100.json'), 'utf8')) as unknown;
  t.same(onDisk, transaction, 'the file holds the whole transaction');
  t.same(
    transaction.objects,
    [
      { id: 'obj-1', sopClassUid: secondaryCaptureUid, sopInstanceUid: '1.2.3.1' },
      { id: 'obj-2', sopClassUid: secondaryCaptureUid, sopInstanceUid: '1.2.3.2' },
    ],
  );

  const reopened = await open();
  t.same(reopened.pending(destination), [transaction], 'a restarted tracker loads the transaction');
});

t.test('tracker commits and requeues from result', async (t) => {
  const { directory, queue, tracker } = await setup(t);
  const entries = [queue.add('obj-1', '1.2.3.1', destination), queue.add('obj-2', '1.2.3.2', destination)];
  await tracker.begin(destination, entries, '1.2.3.100');
  const events = recordEvents(tracker);

  const outcome = await tracker.applyResult(
    {
      transactionUid: '1.2.3.100',
      eventTypeId: 2,
      committed: [{ sopClassUid: secondaryCaptureUid, sopInstanceUid: '1.2.3.1' }],
      failed: [{ sopClassUid: secondaryCaptureUid, sopInstanceUid: '1.2.3.2', failureReason: 0x0112 }],
    },
    'listener',
  );

  t.equal(outcome, 'applied');
  t.equal(queue.state('obj-1', destination), 'committed');
  t.equal(queue.state('obj-2', destination), 'queued');
  t.equal(queue.get('obj-2')?.deliveries[destination]?.lastError, 'commitment failed: no such object instance (0x0112)');
  t.same(events.committed, [{ id: 'obj-1', destination, transactionUid: '1.2.3.100' }]);
  t.same(events.failed, [{ id: 'obj-2', destination, transactionUid: '1.2.3.100', failureReason: 0x0112, reason: 'commitment failed: no such object instance (0x0112)' }]);
  t.same(await readdir(directory), [], 'the answered transaction is removed');
  t.same(tracker.pending(destination), []);
});

t.test('tracker ignores result of unknown transaction', async (t) => {
  const { directory, queue, tracker, lines } = await setup(t);
  const entries = [queue.add('obj-1', '1.2.3.1', destination)];
  await tracker.begin(destination, entries, '1.2.3.100');
  const events = recordEvents(tracker);

  const outcome = await tracker.applyResult(
    { transactionUid: '1.2.3.999', eventTypeId: 1, committed: [{ sopClassUid: secondaryCaptureUid, sopInstanceUid: '1.2.3.1' }], failed: [] },
    'listener',
  );

  t.equal(outcome, 'unknown');
  t.equal(queue.state('obj-1', destination), 'stored', 'the object named in the result is unchanged');
  t.same(queue.calls, []);
  t.same(events.committed, []);
  t.same(await readdir(directory), ['1.2.3.100.json'], 'the pending transaction stays');
  t.match(lines(), /"level":"warn".*"transactionUid":"1\.2\.3\.999".*"msg":"commitment result for unknown transaction ignored"/);
});

t.test('late result of older transaction still applies', async (t) => {
  const { queue, tracker } = await setup(t);
  const entries = [queue.add('obj-1', '1.2.3.1', destination), queue.add('obj-2', '1.2.3.2', destination)];
  // The first request timed out and the objects were asked again in a second transaction.
  await tracker.begin(destination, entries, '1.2.3.100');
  await tracker.begin(destination, entries, '1.2.3.101');
  const events = recordEvents(tracker);

  await tracker.applyResult(
    { transactionUid: '1.2.3.100', eventTypeId: 1, committed: entries.map((entry) => ({ sopClassUid: secondaryCaptureUid, sopInstanceUid: entry.sopInstanceUid })), failed: [] },
    'listener',
  );
  t.same(events.committed.map((event) => event.id), ['obj-1', 'obj-2'], 'the late result commits the objects');

  // The second result then changes nothing: the objects are already committed.
  await tracker.applyResult(
    {
      transactionUid: '1.2.3.101',
      eventTypeId: 2,
      committed: [],
      failed: entries.map((entry) => ({ sopClassUid: secondaryCaptureUid, sopInstanceUid: entry.sopInstanceUid, failureReason: 0x0110 })),
    },
    'listener',
  );
  t.same(events.failed, [], 'a failure after a confirmed commitment requeues nothing');
  t.equal(queue.state('obj-1', destination), 'committed');
  t.equal(queue.state('obj-2', destination), 'committed');
});

t.test('tracker prunes settled and expired transactions', async (t) => {
  let now = new Date('2026-12-01T10:00:00Z');
  const { directory, queue, tracker, lines } = await setup(t, { now: () => now, maxTransactionAgeMs: 60_000 });
  await tracker.begin(destination, [queue.add('obj-1', '1.2.3.1', destination)], '1.2.3.100');
  await tracker.begin(destination, [queue.add('obj-2', '1.2.3.2', destination)], '1.2.3.101');

  // obj-1 was committed through another transaction: 1.2.3.100 has nothing left to settle.
  queue.setState('obj-1', destination, 'committed');
  await tracker.prune();
  t.same((await readdir(directory)).sort(), ['1.2.3.101.json']);

  now = new Date('2026-12-01T10:01:01Z');
  await tracker.prune();
  t.same(await readdir(directory), [], 'the unanswered transaction expires');
  t.equal(queue.state('obj-2', destination), 'stored', 'expiry leaves the object waiting, to be asked again');
  t.match(lines(), /"transactionUid":"1\.2\.3\.101".*"msg":"commitment transaction expired without result"/);
});

t.test('tracker ignores invalid transaction files', async (t) => {
  const { directory, queue, open, lines } = await setup(t);
  await writeFile(join(directory, '1.2.3.5.json'), '{"transactionUid":"1.2.3.5"');
  await writeFile(join(directory, '1.2.3.6.json'), JSON.stringify({ transactionUid: '1.2.3.7', destination, requestedAt: new Date().toISOString(), objects: [] }));
  await writeFile(join(directory, '1.2.3.8.json.tmp'), 'half written');
  queue.add('obj-1', '1.2.3.1', destination);

  const tracker = await open();

  t.same(tracker.pending(destination), []);
  t.same((await readdir(directory)).sort(), ['1.2.3.5.json', '1.2.3.6.json'], 'the temp file is removed, invalid files are kept for inspection');
  t.match(lines(), /"msg":"commitment transaction file unreadable, ignored"/);
  t.match(lines(), /"msg":"commitment transaction file invalid, ignored"/);
});

t.test('event report parsing rejects malformed data sets', async (t) => {
  const valid = parseEventReport(2, {
    TransactionUID: '1.2.3.100',
    ReferencedSOPSequence: [{ ReferencedSOPClassUID: secondaryCaptureUid, ReferencedSOPInstanceUID: '1.2.3.1' }],
    FailedSOPSequence: [{ ReferencedSOPClassUID: secondaryCaptureUid, ReferencedSOPInstanceUID: '1.2.3.2', FailureReason: 0x0119 }],
  });
  t.same(valid, {
    transactionUid: '1.2.3.100',
    eventTypeId: 2,
    committed: [{ sopClassUid: secondaryCaptureUid, sopInstanceUid: '1.2.3.1' }],
    failed: [{ sopClassUid: secondaryCaptureUid, sopInstanceUid: '1.2.3.2', failureReason: 0x0119 }],
  });

  const cases: Array<[string, unknown, RegExp]> = [
    ['no data set', undefined, /no data set/],
    ['no Transaction UID', { ReferencedSOPSequence: [] }, /no valid Transaction UID/],
    ['bad Transaction UID', { TransactionUID: '1.02.3' }, /no valid Transaction UID/],
    ['reference without instance', { TransactionUID: '1.2.3', ReferencedSOPSequence: [{ ReferencedSOPClassUID: secondaryCaptureUid }] }, /Referenced SOP Sequence/],
    ['failure without reason', { TransactionUID: '1.2.3', FailedSOPSequence: [{ ReferencedSOPClassUID: secondaryCaptureUid, ReferencedSOPInstanceUID: '1.2.3.2' }] }, /no Failure Reason/],
  ];
  for (const [name, elements, message] of cases) {
    const error = t.throws(() => parseEventReport(1, elements), name) as unknown;
    t.ok(error instanceof InvalidEventReportError, `${name} throws InvalidEventReportError`);
    t.match((error as Error).message, message, name);
    t.equal((error as InvalidEventReportError).status, 0x0115, `${name} is answered with invalid argument value`);
  }
  t.equal(describeFailureReason(0x0131), 'commitment failed: duplicate transaction UID (0x0131)');
  t.equal(describeFailureReason(0x0999), 'commitment failed: unknown failure reason (0x0999)');
});
