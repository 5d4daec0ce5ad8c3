import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ErrorCodes } from '../../src/errors.js';
import { queryWorklist } from '../../src/worklist/worklist-client.js';
import { buildWorklistQuery } from '../../src/worklist/worklist-query.js';
import { freePort } from '../helpers/ports.js';
import { asciiEntry, memoryLogger, today, worklistConfig } from './fixtures.js';
import { ENDOSCOPE_JIS, ENDOSCOPE_UNICODE, startWlmscpfs, writeWorklistFiles, YAMADA_JIS, YAMADA_UNICODE, type RunningProcess, type TestEntry } from './peers.js';

const query = buildWorklistQuery({ stationAeTitle: 'ENDOCAP_TEST', modality: 'ES', fromDate: today, toDate: today });

const entries: TestEntry[] = [
  {
    characterSet: 'ISO_IR 100',
    patientName: Buffer.from('Müller^Jürgen', 'latin1'),
    patientId: 'PID-LATIN1',
    issuerOfPatientId: 'HOSP',
    birthDate: '19610203',
    sex: 'M',
    accessionNumber: 'ACC-LATIN1',
    studyInstanceUid: '1.2.826.0.1.3680043.10.1437.88.1',
    referringPhysician: Buffer.from('Größe^Käthe', 'latin1'),
    stepDescription: Buffer.from('Koloskopie für Übung', 'latin1'),
    requestedProcedureDescription: Buffer.from('Darmspiegelung ä', 'latin1'),
    startDate: today,
  },
  {
    characterSet: 'ISO_IR 192',
    patientName: Buffer.from('Ærøskøbing^Ŝŭé', 'utf8'),
    patientId: 'PID-UTF8',
    accessionNumber: 'ACC-UTF8',
    studyInstanceUid: '1.2.826.0.1.3680043.10.1437.88.2',
    stepDescription: Buffer.from('Gastroskopie ñ — 胃', 'utf8'),
    startDate: today,
  },
  {
    characterSet: '\\ISO 2022 IR 87',
    patientName: YAMADA_JIS,
    patientId: 'PID-JIS',
    accessionNumber: 'ACC-JIS',
    studyInstanceUid: '1.2.826.0.1.3680043.10.1437.88.3',
    stepDescription: ENDOSCOPE_JIS,
    startDate: today,
  },
  // Another station and another modality: the query leaves both out.
  asciiEntry('ACC-OTHER-STATION', { stationAeTitle: 'OTHER_ROOM' }),
  asciiEntry('ACC-OTHER-MODALITY', { modality: 'CT' }),
];

let directory = '';
let server: RunningProcess;

t.before(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-wl-dcmtk-'));
  await writeWorklistFiles(path.join(directory, 'WLMSCP'), entries);
  server = await startWlmscpfs({ directory, aeTitle: 'WLMSCP' });
});

t.teardown(async () => {
  await server.stop();
  await rm(directory, { recursive: true, force: true });
});

t.test('wlmscpfs entries decode in every character set', async (t) => {
  const { log, lines } = memoryLogger();
  const result = await queryWorklist({ server: worklistConfig(server.port), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  t.equal(result.matches, 3, 'only this station and modality match');
  t.equal(result.malformed, 0);
  t.same(result.warnings, []);

  const byAccession = new Map(result.entries.map((entry) => [entry.accessionNumber, entry]));
  const latin = byAccession.get('ACC-LATIN1');
  t.equal(latin?.patientName, 'Müller^Jürgen');
  t.equal(latin?.referringPhysicianName, 'Größe^Käthe');
  t.equal(latin?.requestedProcedureDescription, 'Darmspiegelung ä');
  t.equal(latin?.step.description, 'Koloskopie für Übung', 'sequence text decoded as ISO_IR 100');
  t.equal(latin?.issuerOfPatientId, 'HOSP');
  t.equal(latin?.patientBirthDate, '19610203');
  t.equal(latin?.patientSex, 'M');
  t.equal(latin?.studyInstanceUid, '1.2.826.0.1.3680043.10.1437.88.1');
  t.same(latin?.requestedProcedureCodes, [{ codeValue: '45378-5', codingSchemeDesignator: 'LN', codingSchemeVersion: '', codeMeaning: 'Colonoscopy' }]);
  t.equal(latin?.step.stationAeTitle, 'ENDOCAP_TEST');
  t.equal(latin?.step.id, 'SPS1');

  t.equal(byAccession.get('ACC-UTF8')?.patientName, 'Ærøskøbing^Ŝŭé');
  t.equal(byAccession.get('ACC-UTF8')?.step.description, 'Gastroskopie ñ — 胃', 'sequence text decoded as UTF-8');
  t.equal(byAccession.get('ACC-JIS')?.patientName, YAMADA_UNICODE, 'ideographic and phonetic groups decoded');
  t.equal(byAccession.get('ACC-JIS')?.step.description, ENDOSCOPE_UNICODE, 'sequence text decoded as ISO 2022 IR 87');

  t.notMatch(lines(), /Müller|PID-LATIN1|ACC-LATIN1|19610203|Yamada/, 'no patient data in the log');
});

t.test('pending responses with warning status still match', async (t) => {
  const { log } = memoryLogger();
  // PatientAge is an optional key wlmscpfs does not support: every match then comes with status FF01.
  const withUnsupportedKey = [...query, { tag: 0x00101010, vr: 'AS' as const, value: '' }];
  const result = await queryWorklist({ server: worklistConfig(server.port), callingAeTitle: 'ENDOCAP_TEST', identifier: withUnsupportedKey, log });
  t.equal(result.entries.length, 3);
});

t.test('no charset declared leaves non-ASCII to a fallback', async (t) => {
  const folder = await mkdtemp(path.join(os.tmpdir(), 'endocap-wl-nocs-'));
  t.teardown(() => rm(folder, { recursive: true, force: true }));
  await writeWorklistFiles(path.join(folder, 'WLMSCP'), [
    { ...asciiEntry('ACC-UNDECLARED-UTF8'), characterSet: null, patientName: Buffer.from('Dvořák^Antonín', 'utf8') },
    { ...asciiEntry('ACC-UNDECLARED-LATIN1'), characterSet: null, patientName: Buffer.from('Dvorak^Antonín', 'latin1') },
    { ...asciiEntry('ACC-WRONG-DECLARED'), characterSet: 'ISO_IR 192', patientName: Buffer.from('Wrong^Zoë', 'latin1') },
  ]);
  const peer = await startWlmscpfs({ directory: folder, aeTitle: 'WLMSCP' });
  t.teardown(() => peer.stop());
  const { log } = memoryLogger();
  const result = await queryWorklist({ server: worklistConfig(peer.port), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  const names = Object.fromEntries(result.entries.map((entry) => [entry.accessionNumber, entry.patientName]));
  t.equal(names['ACC-UNDECLARED-UTF8'], 'Dvořák^Antonín', 'valid UTF-8 without declaration read as UTF-8');
  t.equal(names['ACC-UNDECLARED-LATIN1'], 'Dvorak^Antonín', 'invalid UTF-8 without declaration read as Latin-1');
  t.equal(names['ACC-WRONG-DECLARED'], 'Wrong^Zoë', 'Latin-1 declared as UTF-8 kept as Latin-1');
  t.same([...result.warnings].sort(), ['invalid-bytes', 'undeclared-non-ascii']);

  const assumed = await queryWorklist({ server: worklistConfig(peer.port, { assumedCharacterSet: 'ISO_IR 100' }), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  const assumedNames = Object.fromEntries(assumed.entries.map((entry) => [entry.accessionNumber, entry.patientName]));
  t.equal(assumedNames['ACC-UNDECLARED-UTF8'], Buffer.from('Dvořák^Antonín', 'utf8').toString('latin1'), 'the assumed character set wins');
});

t.test('empty and large results', async (t) => {
  const { log } = memoryLogger();
  const none = await queryWorklist({ server: worklistConfig(server.port), callingAeTitle: 'ENDOCAP_TEST', identifier: buildWorklistQuery({ stationAeTitle: 'NOBODY', fromDate: today, toDate: today }), log });
  t.same(none.entries, []);
  t.equal(none.matches, 0);

  const folder = await mkdtemp(path.join(os.tmpdir(), 'endocap-wl-many-'));
  t.teardown(() => rm(folder, { recursive: true, force: true }));
  await writeWorklistFiles(
    path.join(folder, 'WLMSCP'),
    Array.from({ length: 300 }, (_, index) => asciiEntry(`ACC${String(index).padStart(4, '0')}`)),
  );
  const peer = await startWlmscpfs({ directory: folder, aeTitle: 'WLMSCP' });
  t.teardown(() => peer.stop());
  const many = await queryWorklist({ server: worklistConfig(peer.port), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  t.equal(many.entries.length, 300, 'hundreds of entries');
  t.equal(new Set(many.entries.map((entry) => entry.accessionNumber)).size, 300);

  const cut = await queryWorklist({ server: worklistConfig(peer.port, { maxEntries: 50 }), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log });
  t.equal(cut.entries.length, 50, 'cut at maxEntries');
  t.ok(cut.truncated);
});

t.test('server faults fail with a clear error', async (t) => {
  const { log, lines } = memoryLogger();
  const refused = await freePort();
  await t.rejects(queryWorklist({ server: worklistConfig(refused), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log }), {
    code: ErrorCodes.WORKLIST_QUERY_FAILED,
    message: new RegExp(`worklist query to 127\\.0\\.0\\.1:${refused} failed: connection refused`),
  });

  // A server that accepts the connection and never answers.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  const silentPort = (silent.address() as net.AddressInfo).port;
  await t.rejects(queryWorklist({ server: worklistConfig(silentPort, { associationTimeoutMs: 500 }), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log }), {
    code: ErrorCodes.WORKLIST_QUERY_FAILED,
    message: /timed out/,
  });

  // wlmscpfs sleeping during the query: the whole query is bounded by queryTimeoutMs.
  const slow = await startWlmscpfs({ directory, aeTitle: 'WLMSCP', args: ['-csk', '--sleep-during', '5'] });
  t.teardown(() => slow.stop());
  await t.rejects(queryWorklist({ server: worklistConfig(slow.port, { queryTimeoutMs: 1_000 }), callingAeTitle: 'ENDOCAP_TEST', identifier: query, log }), {
    code: ErrorCodes.WORKLIST_QUERY_FAILED,
    message: /timed out after 1000 ms/,
  });
  t.notMatch(lines(), /Müller|PID-/, 'no patient data in the log');
});
