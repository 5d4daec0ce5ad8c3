import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import t, { type Test } from 'tap';
import { Hl7OrderService } from '../../src/hl7/hl7-order-service.js';
import { createLogger } from '../../src/log.js';
import { hl7Schema } from '../../src/profile/hl7-schema.js';
import { freePort } from '../helpers/ports.js';
import { latinOrder, segment, today, utf8Order } from './messages.js';
import { message, msh, sendWithPythonHl7 } from './peer.js';

async function startService(t: Test, overrides: Record<string, unknown> = {}, directory?: string): Promise<{ service: Hl7OrderService; port: number; logs: () => string; directory: string }> {
  const stateDirectory = directory ?? (await mkdtemp(path.join(os.tmpdir(), 'endocap-hl7-')));
  if (!directory) t.teardown(() => rm(stateDirectory, { recursive: true, force: true }));
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8');
  });
  const port = await freePort();
  const config = hl7Schema.parse({ host: '127.0.0.1', port, patientIdAuthority: 'HOSP-A', receivingApplication: 'ENDOCAP', receivingFacility: 'ENDO', ...overrides });
  const service = new Hl7OrderService({ config, stateDirectory, log: createLogger('trace', stream) });
  await service.start();
  t.teardown(() => service.stop());
  return { service, port, logs: () => text, directory: stateDirectory };
}

t.test('orders in Latin-1 and UTF-8 become procedure entries', async (t) => {
  const { service, port, logs } = await startService(t);
  const results = await sendWithPythonHl7(port, [
    { op: 'send', message: message(...latinOrder.segments()), encoding: latinOrder.encoding },
    { op: 'send', message: message(...utf8Order.segments()), encoding: utf8Order.encoding },
  ]);

  const [latinAck, utf8Ack] = results.map((result) => result.ack);
  t.equal(latinAck?.msa1, 'AA');
  t.equal(latinAck?.msa2, 'LAT0001', 'MSA-2 is the control id of the order');
  t.equal(latinAck?.msh3, 'ENDOCAP', 'the ACK comes from this receiver');
  t.equal(latinAck?.msh5, 'RIS', 'and goes to the sender');
  t.equal(latinAck?.msh9, 'ACK^O01^ACK');
  t.equal(latinAck?.msh18, '8859/1');
  t.equal(utf8Ack?.msa1, 'AA');
  t.equal(utf8Ack?.msa2, 'UTF0001');
  t.equal(utf8Ack?.msh9, 'ACK^O23^ACK');
  t.equal(utf8Ack?.msh18, 'UNICODE UTF-8');

  const entries = service.entries;
  t.equal(entries.length, 2);
  const latin = entries.find((entry) => entry.accessionNumber === latinOrder.accessionNumber);
  t.equal(latin?.patientName, latinOrder.patientName, 'Latin-1 name with its hex escape decoded');
  t.equal(latin?.patientId, latinOrder.patientId, 'the identifier of the configured assigning authority');
  t.equal(latin?.issuerOfPatientId, latinOrder.issuer);
  t.equal(latin?.patientBirthDate, latinOrder.birthDate);
  t.equal(latin?.patientSex, 'M');
  t.equal(latin?.studyInstanceUid, latinOrder.studyInstanceUid, 'ZDS-1');
  t.equal(latin?.requestedProcedureId, 'RP551');
  t.equal(latin?.requestedProcedureDescription, latinOrder.description, 'subcomponent escape decoded');
  t.same(latin?.requestedProcedureCodes, [{ codeValue: 'COLO', codingSchemeDesignator: 'L', codingSchemeVersion: '', codeMeaning: latinOrder.description }]);
  t.equal(latin?.referringPhysicianName, 'Weiß^Käthe');
  t.equal(latin?.requestingPhysician, 'Groß^Jörg');
  t.equal(latin?.admissionId, 'VISIT551');
  t.match(latin?.step, { id: 'SPS551', modality: 'ES', startDate: today, startTime: '1030' });

  const utf8 = entries.find((entry) => entry.accessionNumber === utf8Order.accessionNumber);
  t.equal(utf8?.patientName, utf8Order.patientName);
  t.equal(utf8?.patientId, utf8Order.patientId);
  t.equal(utf8?.requestedProcedureDescription, utf8Order.description);
  t.equal(utf8?.studyInstanceUid, utf8Order.studyInstanceUid, 'IPC-3');
  t.equal(utf8?.requestedProcedureId, 'RP552', 'IPC-2');
  t.match(utf8?.step, { id: 'SPS552', modality: 'ES', stationAeTitle: 'ENDOCAP_TEST', stationName: 'TOWER-2', location: 'ROOM 3', startDate: today, startTime: '1115' });
  t.same(utf8?.step.protocolCodes, [{ codeValue: 'PROT1', codingSchemeDesignator: 'L', codingSchemeVersion: '', codeMeaning: 'Standard' }]);

  t.equal(service.status().messagesAccepted, 2);
  for (const value of ['Müller', 'Jürgen', 'José', 'Ærøskøbing', 'PIDLAT551', 'PIDUTF552', 'OTHERID77', 'ACCLAT551', 'ACCUTF552', '19480305', 'Koloskopie', 'Weiß']) {
    t.notOk(logs().includes(value), `${value} is in no log line`);
  }
});

t.test('orders survive a restart of the service', async (t) => {
  const first = await startService(t);
  await sendWithPythonHl7(first.port, [{ op: 'send', message: message(...utf8Order.segments()), encoding: 'utf-8' }]);
  await first.service.stop();
  const second = await startService(t, {}, first.directory);
  t.same(
    second.service.entries.map((entry) => [entry.patientName, entry.accessionNumber]),
    [[utf8Order.patientName, utf8Order.accessionNumber]],
  );
});

t.test('cancel removes the order, by ORM and by OMI', async (t) => {
  const { service, port } = await startService(t);
  const cancelOrm = message(
    msh('ORM^O01', 'CAN0001', '8859/1'),
    segment('PID', { 1: '1', 3: 'PIDLAT551^^^HOSP-A^MR' }),
    segment('ORC', { 1: 'CA', 2: 'PLC-LAT-1', 3: 'FIL-LAT-1' }),
    segment('OBR', { 1: '1', 2: 'PLC-LAT-1', 3: 'FIL-LAT-1', 4: 'COLO^Koloskopie^L', 18: 'ACCLAT551' }),
  );
  // No order numbers: the IPC accession number names the order.
  const cancelOmi = message(
    msh('OMI^O23^OMI_O23', 'CAN0002', 'UNICODE UTF-8'),
    segment('PID', { 1: '1', 3: 'PIDUTF552^^^HOSP-A^MR' }),
    segment('ORC', { 1: 'CA' }),
    segment('OBR', { 1: '1', 4: 'GASTRO^Gastroskopie^L' }),
    segment('IPC', { 1: 'ACCUTF552', 2: 'RP552', 4: 'SPS552' }),
  );
  const results = await sendWithPythonHl7(port, [
    { op: 'send', message: message(...latinOrder.segments()), encoding: 'latin-1' },
    { op: 'send', message: message(...utf8Order.segments()), encoding: 'utf-8' },
    { op: 'send', message: cancelOrm, encoding: 'latin-1' },
  ]);
  t.same(results.map((result) => result.ack?.msa1), ['AA', 'AA', 'AA']);
  t.same(service.entries.map((entry) => entry.accessionNumber), [utf8Order.accessionNumber], 'the ORM cancel removed its order only');

  const second = await sendWithPythonHl7(port, [
    { op: 'send', message: cancelOmi, encoding: 'utf-8' },
    { op: 'send', message: cancelOmi.replace('CAN0002', 'CAN0003'), encoding: 'utf-8' },
  ]);
  t.same(second.map((result) => result.ack?.msa1), ['AA', 'AA'], 'a cancel of an order already gone is accepted again');
  t.same(service.entries, []);
});

t.test('ADT A08 updates and A40 merges the patient of open orders', async (t) => {
  const { service, port } = await startService(t);
  const update = message(
    msh('ADT^A08^ADT_A01', 'ADT0001', 'UNICODE UTF-8'),
    segment('EVN', { 1: 'A08', 2: '20261204101500' }),
    segment('PID', { 1: '1', 3: 'PIDUTF552^^^HOSP-A^MR', 5: 'Ærøskøbing-Šťastná^Zoë^Marie', 7: '19570722', 8: 'F' }),
    segment('PV1', { 1: '1', 2: 'O' }),
  );
  const merge = message(
    msh('ADT^A40^ADT_A39', 'ADT0002', 'UNICODE UTF-8'),
    segment('EVN', { 1: 'A40', 2: '20261204101600' }),
    segment('PID', { 1: '1', 3: 'PIDNEW553^^^HOSP-A^MR', 5: 'Ærøskøbing^Zoë' }),
    segment('MRG', { 1: 'PIDUTF552^^^HOSP-A^MR' }),
  );
  const results = await sendWithPythonHl7(port, [
    { op: 'send', message: message(...latinOrder.segments()), encoding: 'latin-1' },
    { op: 'send', message: message(...utf8Order.segments()), encoding: 'utf-8' },
    { op: 'send', message: update, encoding: 'utf-8' },
  ]);
  t.same(results.map((result) => result.ack?.msa1), ['AA', 'AA', 'AA']);
  t.equal(results[2]?.ack?.msh9, 'ACK^A08^ACK');
  const updated = service.entries.find((entry) => entry.accessionNumber === utf8Order.accessionNumber);
  t.equal(updated?.patientName, 'Ærøskøbing-Šťastná^Zoë^Marie');
  t.equal(updated?.patientBirthDate, '19570722');
  const other = service.entries.find((entry) => entry.accessionNumber === latinOrder.accessionNumber);
  t.equal(other?.patientName, latinOrder.patientName, 'the other patient is unchanged');

  const merged = await sendWithPythonHl7(port, [{ op: 'send', message: merge, encoding: 'utf-8' }]);
  t.equal(merged[0]?.ack?.msa1, 'AA');
  const moved = service.entries.find((entry) => entry.accessionNumber === utf8Order.accessionNumber);
  t.equal(moved?.patientId, 'PIDNEW553');
  t.equal(moved?.issuerOfPatientId, 'HOSP-A');
  t.equal(moved?.patientName, 'Ærøskøbing^Zoë');
  t.equal(moved?.patientBirthDate, '19570722', 'a field the A40 leaves out keeps its value');
  t.equal(service.entries.find((entry) => entry.accessionNumber === latinOrder.accessionNumber)?.patientId, latinOrder.patientId);
});

t.test('message split into three TCP writes is acknowledged', async (t) => {
  const { service, port, logs } = await startService(t);
  const results = await sendWithPythonHl7(port, [{ op: 'split', message: message(...utf8Order.segments('SPLIT001')), encoding: 'utf-8', parts: 3, pauseMs: 300 }]);
  t.equal(results[0]?.ack?.msa1, 'AA');
  t.equal(results[0]?.ack?.msa2, 'SPLIT001');
  t.equal(service.entries[0]?.patientName, utf8Order.patientName, 'a character cut between writes comes out whole');
  t.ok(logs().split('\n').filter((line) => line.includes('"MLLP bytes received"')).length >= 3, 'the listener received three reads');
});

t.test('garbage is dropped and the listener keeps working', async (t) => {
  const { service, port, logs } = await startService(t);
  const framedGarbage = Buffer.concat([Buffer.from([0x0b]), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from([0x1c, 0x0d])]).toString('hex');
  const results = await sendWithPythonHl7(port, [
    { op: 'raw', hex: Buffer.from('\x00\xffnot a frame\r\n', 'latin1').toString('hex'), expectAck: false, waitMs: 500 },
    { op: 'raw', hex: framedGarbage, expectAck: true },
    { op: 'send', message: message(...utf8Order.segments('AFTER001')), encoding: 'utf-8' },
  ]);
  t.equal(results[0]?.ack, null, 'bytes outside a frame get no answer');
  t.equal(results[1]?.ack?.msa1, 'AR', 'a frame that is not HL7 is rejected');
  t.equal(results[1]?.ack?.msa2, '');
  t.equal(results[1]?.ack?.errCode, '100');
  t.match(results[1]?.ack?.msa3, /does not start with an MSH segment/);
  t.equal(results[2]?.ack?.msa1, 'AA', 'a valid message on the same connection is accepted');
  t.equal(results[2]?.ack?.msa2, 'AFTER001');
  t.equal(service.entries.length, 1);
  t.equal(service.status().bytesDiscarded, 15);
  t.match(logs(), /bytes outside an MLLP frame discarded/);
});

t.test('unsupported MSH-18 and missing fields are answered AE with the reason', async (t) => {
  const { service, port, logs } = await startService(t);
  const jis = utf8Order.segments('JIS0001').map((line, index) => (index === 0 ? msh('OMI^O23^OMI_O23', 'JIS0001', 'ISO IR87') : line));
  const noAccession = utf8Order.segments('NOACC01').map((line) => (line.startsWith('IPC') ? segment('IPC', { 2: 'RP552', 4: 'SPS552' }) : line));
  const otherAuthority = utf8Order.segments('AUTH001').map((line) => (line.startsWith('PID') ? segment('PID', { 1: '1', 3: 'PIDUTF552^^^ELSEWHERE^MR', 5: 'Ærøskøbing^Zoë' }) : line));
  const undeclared = latinOrder.segments('UNDECL1').map((line, index) => (index === 0 ? msh('ORM^O01', 'UNDECL1') : line));
  const unsupportedType = message(msh('ADT^A01^ADT_A01', 'ADT0099'), segment('PID', { 1: '1', 3: 'X^^^HOSP-A' }));
  const results = await sendWithPythonHl7(port, [
    { op: 'send', message: message(...jis), encoding: 'utf-8' },
    { op: 'send', message: message(...noAccession), encoding: 'utf-8' },
    { op: 'send', message: message(...otherAuthority), encoding: 'utf-8' },
    { op: 'send', message: message(...undeclared), encoding: 'latin-1' },
    { op: 'send', message: unsupportedType, encoding: 'utf-8' },
  ]);
  const [charset, accession, authority, ascii, type] = results.map((result) => result.ack);

  t.equal(charset?.msa1, 'AE');
  t.equal(charset?.msa2, 'JIS0001');
  t.equal(charset?.msh9, 'ACK^O23^ACK', 'the ACK names the trigger event even when the message cannot be decoded');
  t.equal(charset?.errCode, '103');
  t.equal(charset?.errLocation, 'MSH^1^18');
  t.match(charset?.errText, /character set "ISO IR87" in MSH-18 is not supported/);

  t.equal(accession?.msa1, 'AE');
  t.equal(accession?.errCode, '101');
  t.match(accession?.errText, 'order has no accession number in IPC-1');

  t.equal(authority?.msa1, 'AE');
  t.match(authority?.errText, 'PID-3 has no patient identifier assigned by "HOSP-A"');

  t.equal(ascii?.msa1, 'AE', 'non-ASCII bytes with an empty MSH-18 and the ASCII default');
  t.match(ascii?.errText, /bytes above 0x7F/);

  t.equal(type?.msa1, 'AR');
  t.equal(type?.errCode, '201');
  t.match(type?.errText, 'message type ADT^A01 is not supported');

  t.same(service.entries, [], 'no order was stored');
  t.equal(service.status().messagesRejected, 5);
  for (const value of ['Ærøskøbing', 'PIDUTF552', 'ACCUTF552', 'Müller', 'ACCLAT551']) {
    t.notOk(logs().includes(value), `${value} is in no log line`);
    t.notOk(results.some((result) => result.ack?.errText?.includes(value) || result.ack?.msa3.includes(value)), `${value} is in no ACK`);
  }
});

t.test('connection from a peer not allowed is closed', async (t) => {
  const { service, port } = await startService(t, { allowedPeers: ['192.0.2.1'] });
  const socket = net.connect(port, '127.0.0.1');
  const closed = await new Promise<boolean>((resolve) => {
    socket.on('close', () => resolve(true));
    socket.on('error', () => undefined);
  });
  t.ok(closed);
  t.equal(service.status().connectionsRejected, 1);
});

t.test('oversize message is answered AR', async (t) => {
  const { service, port } = await startService(t, { maxMessageBytes: 1_024 });
  const long = [...utf8Order.segments('LONG0001'), segment('NTE', { 1: '1', 3: 'x'.repeat(2_000) })];
  const results = await sendWithPythonHl7(port, [
    { op: 'send', message: message(...long), encoding: 'utf-8' },
    { op: 'send', message: message(...utf8Order.segments('SHORT001')), encoding: 'utf-8' },
  ]);
  t.equal(results[0]?.ack?.msa1, 'AR');
  t.equal(results[0]?.ack?.msa2, 'LONG0001');
  t.match(results[0]?.ack?.errText, /longer than the receiver accepts \(hl7.maxMessageBytes 1024\)/);
  t.equal(results[1]?.ack?.msa1, 'AA');
  t.equal(service.entries.length, 1);
});

t.test('a port held by another program is bound once it is free, and the orders stay usable', async (t) => {
  const stateDirectory = await mkdtemp(path.join(os.tmpdir(), 'endocap-hl7-'));
  t.teardown(() => rm(stateDirectory, { recursive: true, force: true }));
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const port = (blocker.address() as net.AddressInfo).port;
  const config = hl7Schema.parse({ host: '127.0.0.1', port, receivingApplication: 'ENDOCAP', receivingFacility: 'ENDO' });
  const service = new Hl7OrderService({ config, stateDirectory, log: createLogger('silent'), rebindIntervalMs: 200 });
  const changes: Array<{ listening: boolean; reason?: string }> = [];
  service.on('listenerChanged', (change) => changes.push(change));

  await service.start();
  t.teardown(() => service.stop());
  t.equal(service.status().listening, false, 'start returns although the port is taken');
  t.match(changes, [{ listening: false, reason: /EADDRINUSE/ }], 'the failure is reported with its reason');

  await new Promise<void>((resolve) => blocker.close(() => resolve()));
  while (!service.status().listening) await new Promise((resolve) => setTimeout(resolve, 50));
  t.match(changes.at(-1), { listening: true }, 'binding again is reported');
  const [result] = await sendWithPythonHl7(port, [{ op: 'send', message: message(...utf8Order.segments()), encoding: 'utf-8' }]);
  t.equal(result?.ack?.msa1, 'AA', 'the listener takes orders after the port was freed');
});
