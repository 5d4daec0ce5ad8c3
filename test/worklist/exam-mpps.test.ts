import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../src/errors.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { capture, entry, FixedWorklist, removeDirectory, startExamHarness } from './exam-fixtures.js';
import { memoryLogger } from './fixtures.js';
import { decodeMpps, startMppsReceiver } from './mpps-receiver.js';

const VL = '1.2.840.10008.5.1.4.1.1.77.1.1';
const VIDEO = '1.2.840.10008.5.1.4.1.1.77.1.1.1';

const patientName = 'Ærøskøbing^Jürgen=山田^太郎=やまだ^たろう';

t.test('mpps in progress then completed with every object', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-mpps-'));
  t.teardown(() => removeDirectory(directory));
  const receiver = await startMppsReceiver(path.join(directory, 'received'));
  t.teardown(() => receiver.stop());
  const { log, lines } = memoryLogger();
  const worklist = new FixedWorklist([
    entry('ACC100', { patientName, patientId: 'PID-ÆØ-1', step: { ...entry('ACC100').step, description: 'Koloskopie für Übung' } }),
    entry('ACC200'),
  ]);
  const harness = await startExamHarness({ directory: path.join(directory, 'state'), worklist, mppsPort: receiver.port, log });
  t.teardown(() => harness.close());

  const selected = await harness.manager.select({ value: 'ACC100', by: ['accession-number'], source: 'control' });
  t.equal(selected.alreadyOpen, false);
  t.match(selected.examId, /^E\d{8}-\d{6}$/);
  const stills = [await capture(harness, 'still'), await capture(harness, 'still')];
  const clip = await capture(harness, 'clip');
  t.equal(stills[0]?.examId, selected.examId);
  t.equal(stills[0]?.studyInstanceUid, '1.2.826.0.1.3680043.10.1437.66.100', 'the worklist Study Instance UID is used');
  t.equal(clip.studyInstanceUid, stills[0]?.studyInstanceUid, 'one study for every object');
  t.equal(stills[0]?.seriesInstanceUid, stills[1]?.seriesInstanceUid);
  t.not(clip.seriesInstanceUid, stills[0]?.seriesInstanceUid, 'clips in a series of their own');
  t.same(stills.map((still) => still.instanceNumber), [1, 2]);

  await waitFor(() => receiver.received.length >= 1, 10_000, 'N-CREATE');
  const ended = await harness.manager.end({ source: 'control' });
  t.same(ended, { examId: selected.examId, outcome: 'completed', objects: 3 });
  await waitFor(() => receiver.received.length >= 2, 10_000, 'N-SET');
  t.same(receiver.received.map((message) => message.kind), ['N-CREATE', 'N-SET']);
  t.equal(receiver.received[0]?.sopInstanceUid, receiver.received[1]?.sopInstanceUid, 'N-SET names the created instance');

  const created = await decodeMpps(receiver.received[0]?.file ?? '');
  t.equal(created.PerformedProcedureStepStatus, 'IN PROGRESS');
  t.equal(created.SpecificCharacterSet, 'ISO_IR 192');
  t.equal(created.PatientName, patientName, 'names byte-exact after conversion to UTF-8');
  t.equal(created.PatientID, 'PID-ÆØ-1');
  t.equal(created.PatientBirthDate, '19700101');
  t.equal(created.Modality, 'ES');
  t.equal(created.PerformedProcedureStepID, selected.examId);
  t.same(created.ScheduledStep, {
    StudyInstanceUID: '1.2.826.0.1.3680043.10.1437.66.100',
    AccessionNumber: 'ACC100',
    ScheduledProcedureStepID: 'SPSACC100',
    ScheduledProcedureStepDescription: 'Koloskopie für Übung',
  });
  t.same(created.PerformedSeries, []);

  const completed = await decodeMpps(receiver.received[1]?.file ?? '');
  t.equal(completed.PerformedProcedureStepStatus, 'COMPLETED');
  t.same(
    completed.PerformedSeries,
    [
      { SeriesInstanceUID: stills[0]?.seriesInstanceUid, References: stills.map((still) => [VL, still.sopInstanceUid]) },
      { SeriesInstanceUID: clip.seriesInstanceUid, References: [[VIDEO, clip.sopInstanceUid]] },
    ],
    'every object, by series',
  );
  t.equal(completed.DiscontinuationReason, null);
  t.same(harness.queue?.list(), [], 'the queue is empty once the N-SET is accepted');

  const after = await harness.manager.allocate('still', new Date());
  t.equal(after.examId, undefined, 'after the end, stills go to the unidentified study');
  t.match(after.study.patientId, /^UNID-/);
  t.notMatch(lines(), /Ærøskøbing|PID-ÆØ|ACC100|19700101/, 'no patient data in the log');
});

t.test('mpps discontinued when nothing was captured', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-disc-'));
  t.teardown(() => removeDirectory(directory));
  const receiver = await startMppsReceiver(path.join(directory, 'received'));
  t.teardown(() => receiver.stop());
  const { log } = memoryLogger();
  const harness = await startExamHarness({ directory: path.join(directory, 'state'), worklist: new FixedWorklist([entry('ACC300'), entry('ACC301')]), mppsPort: receiver.port, log });
  t.teardown(() => harness.close());

  await harness.manager.select({ value: 'ACC300', by: ['accession-number'], source: 'mqtt' });
  const abandoned = await harness.manager.end({ source: 'pedal' });
  t.equal(abandoned.outcome, 'discontinued');
  await harness.manager.select({ value: 'ACC301', by: ['accession-number'], source: 'mqtt' });
  await capture(harness, 'still');
  const operator = await harness.manager.end({ source: 'control', discontinue: true, reason: 'wrong-worklist-entry' });
  t.same(operator, { examId: operator.examId, outcome: 'discontinued', objects: 1 });

  await waitFor(() => receiver.received.length >= 4, 10_000, 'four MPPS messages');
  const decoded = await Promise.all(receiver.received.map((message) => decodeMpps(message.file)));
  t.same(decoded.map((message) => message.PerformedProcedureStepStatus), ['IN PROGRESS', 'DISCONTINUED', 'IN PROGRESS', 'DISCONTINUED']);
  t.equal(decoded[1]?.DiscontinuationReason, '110513', 'abandoned: unspecified reason');
  t.same(decoded[1]?.PerformedSeries, []);
  t.equal(decoded[3]?.DiscontinuationReason, '110514', 'operator: incorrect worklist entry');
  t.equal(decoded[3]?.PerformedSeries[0]?.References.length, 1, 'the captured still is still listed');
});

t.test('mpps waits for a server that is down', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-down-'));
  t.teardown(() => removeDirectory(directory));
  const port = await freePort();
  const { log, lines } = memoryLogger();
  const harness = await startExamHarness({ directory: path.join(directory, 'state'), worklist: new FixedWorklist([entry('ACC400')]), mppsPort: port, log });
  t.teardown(() => harness.close());

  await harness.manager.select({ value: 'ACC400', by: ['accession-number'], source: 'barcode' });
  await capture(harness, 'still');
  await harness.manager.end({ source: 'idle' });
  await waitFor(() => lines().includes('MPPS server unreachable, retrying'), 10_000, 'a failed attempt');
  t.equal(harness.queue?.list().length, 1, 'the messages wait in the queue');

  const receiver = await startMppsReceiver(path.join(directory, 'received'), port);
  t.teardown(() => receiver.stop());
  await waitFor(() => receiver.received.length >= 2, 15_000, 'N-CREATE and N-SET after the server came back');
  t.same(receiver.received.map((message) => message.kind), ['N-CREATE', 'N-SET']);
  await waitFor(() => harness.queue?.list().length === 0, 5_000, 'an empty queue');
});

t.test('mpps rejected permanently is set aside', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-rej-'));
  t.teardown(() => removeDirectory(directory));
  const receiver = await startMppsReceiver(path.join(directory, 'received'));
  t.teardown(() => receiver.stop());
  // Missing attribute (0120): a permanent failure.
  receiver.status = 0x0120;
  const { log } = memoryLogger();
  const harness = await startExamHarness({ directory: path.join(directory, 'state'), worklist: new FixedWorklist([entry('ACC500')]), mppsPort: receiver.port, log });
  t.teardown(() => harness.close());
  const failures: Array<{ setAside: boolean; reason: string }> = [];
  harness.sender?.on('mppsFailed', ({ setAside, reason }) => failures.push({ setAside, reason }));

  await harness.manager.select({ value: 'ACC500', by: ['accession-number'], source: 'barcode' });
  await capture(harness, 'still');
  await waitFor(() => failures.length >= 1, 10_000, 'the rejection');
  t.equal(failures[0]?.setAside, true);
  t.match(failures[0]?.reason ?? '', /N-CREATE of MPPS for exam E\d{8}-\d{6} failed with status 0x0120/);
  t.equal(harness.queue?.list()[0]?.setAside, failures[0]?.reason, 'kept on disk for an operator');
  t.same(harness.queue?.pending(), []);
});

t.test('exam survives a restart', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-restart-'));
  t.teardown(() => removeDirectory(directory));
  const receiver = await startMppsReceiver(path.join(directory, 'received'));
  t.teardown(() => receiver.stop());
  const { log } = memoryLogger();
  const worklist = new FixedWorklist([entry('ACC600')]);
  const spool = new Set<string>();
  const first = await startExamHarness({ directory: path.join(directory, 'state'), worklist, mppsPort: receiver.port, spool, log });
  const { examId } = await first.manager.select({ value: 'ACC600', by: ['accession-number'], source: 'barcode' });
  const stored = await capture(first, 'still');
  // A capture cut short by a crash: numbered, in the spool, but not yet recorded as stored.
  const cut = await first.manager.allocate('still', new Date());
  spool.add(cut.sopInstanceUid);
  // Another that never reached the spool.
  await first.manager.allocate('still', new Date());
  await first.close();

  const second = await startExamHarness({ directory: path.join(directory, 'state'), worklist, mppsPort: receiver.port, spool, log });
  t.teardown(() => second.close());
  t.equal(second.manager.status().examId, examId, 'the exam is open after the restart');
  const next = await capture(second, 'still');
  t.equal(next.studyInstanceUid, stored.studyInstanceUid);
  t.equal(next.instanceNumber, 4, 'instance numbers are never reused');
  const ended = await second.manager.end({ source: 'control' });
  t.equal(ended.objects, 3, 'the stored, the recovered and the new still; the lost one is left out');
  await waitFor(() => receiver.received.length >= 2, 10_000, 'MPPS messages');
  const completed = await decodeMpps(receiver.received[1]?.file ?? '');
  t.same(completed.PerformedSeries[0]?.References.map(([, uid]) => uid), [stored.sopInstanceUid, cut.sopInstanceUid, next.sopInstanceUid]);
});

t.test('idle exam ended after a restart', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-idle-'));
  t.teardown(() => removeDirectory(directory));
  const { log } = memoryLogger();
  const worklist = new FixedWorklist([entry('ACC700')]);
  const first = await startExamHarness({ directory, worklist, exam: { idleEndMinutes: 30 }, log });
  await first.manager.select({ value: 'ACC700', by: ['accession-number'], source: 'barcode' });
  await capture(first, 'still');
  await first.close();

  // The box comes back an hour later.
  const second = await startExamHarness({ directory, worklist, exam: { idleEndMinutes: 30 }, clock: () => Date.now() + 3_600_000, log });
  t.teardown(() => second.close());
  const ended: Array<{ source: string; outcome: string }> = [];
  second.manager.on('examEnded', (event) => ended.push(event));
  // The idle timer does not keep the process alive, so the test polls.
  await waitFor(() => ended.length > 0, 5_000, 'the idle end');
  t.equal(ended[0]?.source, 'idle');
  t.equal(ended[0]?.outcome, 'completed');
  t.equal(second.manager.status().active, false);
});

t.test('selection faults give clear errors', async (t) => {
  const { log, lines } = memoryLogger();
  const worklist = new FixedWorklist([entry('ACC800'), entry('ACC801', { patientId: 'PID-SHARED' }), entry('ACC802', { patientId: 'PID-SHARED' })]);
  const harness = await startExamHarness({ worklist, log });
  t.teardown(async () => {
    await harness.close();
    await removeDirectory(harness.directory);
  });
  const failures: string[] = [];
  harness.manager.on('selectionFailed', ({ code }) => failures.push(code));

  await t.rejects(harness.manager.select({ value: 'ACC-UNKNOWN', by: ['accession-number'], source: 'mqtt' }), {
    code: ErrorCodes.EXAM_NO_MATCH,
    message: 'no worklist entry matches the accession number among 3 entries',
  });
  t.equal(worklist.refreshes, 1, 'the worklist is queried again before giving up');
  await t.rejects(harness.manager.select({ value: 'PID-SHARED', by: ['accession-number', 'patient-id'], source: 'barcode' }), {
    code: ErrorCodes.EXAM_AMBIGUOUS,
    message: /^2 worklist entries match the accession number or patient id; /,
  });
  await t.rejects(harness.manager.end({ source: 'mqtt' }), { code: ErrorCodes.EXAM_NOT_OPEN });
  t.same(failures, [ErrorCodes.EXAM_NO_MATCH, ErrorCodes.EXAM_AMBIGUOUS]);

  const first = await harness.manager.select({ value: 'ACC800', by: ['accession-number'], source: 'barcode' });
  const again = await harness.manager.select({ value: 'ACC800', by: ['accession-number', 'patient-id'], source: 'barcode' });
  t.same(again, { examId: first.examId, alreadyOpen: true }, 'the same procedure again keeps the exam');
  const switched = await harness.manager.select({ value: 'ACC801', by: ['accession-number'], source: 'mqtt' });
  t.equal(switched.endedExamId, first.examId, 'another procedure ends the open exam first');
  t.notMatch(lines(), /ACC-UNKNOWN|PID-SHARED|Test\^Patient/, 'no patient data in the log');
});

t.test('automatic selection of the one procedure scheduled now', async (t) => {
  const { log } = memoryLogger();
  const later = entry('ACC901', { step: { ...entry('ACC901').step, startTime: '' , startDate: '20000101' } });
  const worklist = new FixedWorklist([entry('ACC900'), later]);
  const harness = await startExamHarness({ worklist, exam: { autoSelect: { enabled: true, windowBeforeMinutes: 60, windowAfterMinutes: 60 } }, log });
  t.teardown(async () => {
    await harness.close();
    await removeDirectory(harness.directory);
  });
  const still = await capture(harness, 'still');
  t.equal(harness.manager.status().source, 'auto');
  t.equal(still.studyInstanceUid, '1.2.826.0.1.3680043.10.1437.66.900');
  await harness.manager.end({ source: 'pedal' });
  const next = await capture(harness, 'still');
  t.equal(next.examId, undefined, 'an ended procedure is not selected again');

  worklist.entries.push(entry('ACC902'), entry('ACC903'));
  const ambiguous = await capture(harness, 'still');
  t.equal(ambiguous.examId, undefined, 'two procedures now: no automatic selection');
});

t.test('unusable exam state is moved aside', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-exam-corrupt-'));
  t.teardown(() => removeDirectory(directory));
  await writeFile(path.join(directory, 'exam.json'), '{"formatVersion":1,"open":{"entry":{"patientName":"Leak^Corrupt"');
  const { log, lines } = memoryLogger();
  const harness = await startExamHarness({ directory, worklist: new FixedWorklist([entry('ACC950')]), log });
  t.teardown(() => harness.close());
  t.equal(harness.manager.status().active, false, 'the box starts with no exam open');
  const names = await readdir(directory);
  t.ok(names.some((name) => name.startsWith('exam.json.invalid-')), 'the file is kept beside, for inspection');
  t.match(lines(), /exam state unusable, moved aside/);
  t.notMatch(lines(), /Leak\^Corrupt/, 'its content is not logged');
  const selected = await harness.manager.select({ value: 'ACC950', by: ['accession-number'], source: 'control' });
  t.equal(selected.alreadyOpen, false, 'exams work again');
});
