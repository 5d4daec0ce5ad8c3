import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { cFindRequest } from '../../src/pacs/dimse-command.js';
import { Dataset, TransferSyntax } from '../../src/pacs/dimse.js';
import { find, findOverAssociation, modalityWorklistFind } from '../../src/pacs/find-scu.js';
import { ScuAssociation } from '../../src/pacs/scu-association.js';
import { freePort } from '../helpers/ports.js';
import { destinationFor, memoryLogger } from './fixtures.js';
import { startWorklistScp, type RunningPeer, type WorklistEntry } from './peers.js';

const entries: WorklistEntry[] = [1, 2, 3].map((index) => ({
  patientName: `MARKER^SECRET${index}`,
  patientId: `PIDMARKER7${index}`,
  accessionNumber: `ACC${index}`,
  studyInstanceUid: `1.2.826.0.1.3680043.10.1437.5.${index}`,
  scheduledProcedureStepId: `SPS${index}`,
}));

let workDirectory = '';
let worklist: RunningPeer;

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-find-'));
  worklist = await startWorklistScp({ port: await freePort(), aeTitle: 'WLMSCP', directory: workDirectory, entries });
});

t.teardown(async () => {
  await worklist.stop();
  await rm(workDirectory, { recursive: true, force: true });
});

t.test('find returns every match of wlmscpfs', async (t) => {
  const { log, lines } = memoryLogger();
  const result = await find({
    destination: destinationFor(worklist.port, { calledAeTitle: 'WLMSCP' }),
    callingAeTitle: 'ENDOCAP',
    sopClassUid: modalityWorklistFind,
    // PatientAge is an optional key wlmscpfs does not support, so every match comes with status FF01.
    identifier: { PatientName: '', PatientID: '', PatientAge: '', AccessionNumber: '', ScheduledProcedureStepSequence: [{ Modality: 'ES', ScheduledProcedureStepID: '' }] },
    log,
  });

  t.equal(result.status, 0);
  t.same(result.matches.map((match) => match.AccessionNumber).sort(), ['ACC1', 'ACC2', 'ACC3']);
  const first = result.matches.find((match) => match.AccessionNumber === 'ACC1');
  t.same(first?.PatientName, [{ Alphabetic: 'MARKER^SECRET1' }]);
  t.match(first?.ScheduledProcedureStepSequence, [{ ScheduledProcedureStepID: 'SPS1' }]);
  t.notMatch(lines(), /MARKER\^SECRET|PIDMARKER7/, 'no patient data in the log');
  t.notMatch(worklist.output(), /Association Aborted|Protocol error/i, 'wlmscpfs saw a clean association');
});

t.test('find pending statuses reach the caller', async (t) => {
  const { log } = memoryLogger();
  const association = await ScuAssociation.open({
    host: '127.0.0.1',
    port: worklist.port,
    callingAeTitle: 'ENDOCAP',
    calledAeTitle: 'WLMSCP',
    connectTimeoutMs: 2_000,
    associationTimeoutMs: 3_000,
    contexts: [{ abstractSyntaxUid: modalityWorklistFind, transferSyntaxUids: [TransferSyntax.ExplicitVRLittleEndian] }],
    log,
  });
  t.teardown(() => association.release(2_000));
  const identifier = new Dataset({ PatientName: '', PatientAge: '' }, TransferSyntax.ExplicitVRLittleEndian).getDenaturalizedDataset();
  const statuses: number[] = [];

  const final = await association.send(
    { abstractSyntaxUid: modalityWorklistFind, transferSyntaxUid: TransferSyntax.ExplicitVRLittleEndian, command: cFindRequest(modalityWorklistFind), dataset: identifier },
    { timeoutMs: 5_000, label: 'C-FIND', onPending: (response) => statuses.push(response.status) },
  );
  statuses.push(final.status);
  t.same(statuses, [0xff01, 0xff01, 0xff01, 0x0000], 'three pending-with-warning responses, then success');

  const matches: Buffer[] = [];
  const status = await findOverAssociation(association, {
    sopClassUid: modalityWorklistFind,
    identifier,
    transferSyntaxUid: TransferSyntax.ExplicitVRLittleEndian,
    timeoutMs: 5_000,
    onMatch: (match) => matches.push(match),
  });
  t.equal(status, 0, 'a second C-FIND on the same association succeeds');
  t.equal(matches.length, 3);
});
