import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { startDaemon } from '../helpers/daemon-process.js';
import { PYTHON, validateIod } from '../helpers/dicom-tools.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';
import { latinOrder, segment, utf8Order } from '../hl7/messages.js';
import { message, msh, sendWithPythonHl7 } from '../hl7/peer.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');

interface ObjectAttributes {
  SpecificCharacterSet: string;
  PatientName: string;
  PatientNameHex: string;
  PatientID: string;
  PatientIDHex: string;
  IssuerOfPatientID: string;
  PatientBirthDate: string;
  AccessionNumber: string;
  StudyInstanceUID: string;
  StudyDescription: string;
  Request: { AccessionNumber?: string; RequestedProcedureID?: string; ScheduledProcedureStepID?: string };
}

async function readObject(file: string): Promise<ObjectAttributes> {
  const { stdout } = await run(PYTHON, [path.join(root, 'test/worklist/read_object.py'), file]);
  return JSON.parse(stdout) as ObjectAttributes;
}

async function press(pedal: Awaited<ReturnType<typeof open>>): Promise<void> {
  await pedal.write(Buffer.from([0x31]));
  await new Promise((resolve) => setTimeout(resolve, 60));
  await pedal.write(Buffer.from([0x30]));
  await new Promise((resolve) => setTimeout(resolve, 400));
}

t.test('HL7 orders give captured objects their patient and accession', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-e2e-hl7-'));
  const orthanc = await startOrthanc();
  const pedalPty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(async () => {
    await pedalPty.unplug();
    await orthanc.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const hl7Port = await freePort();
  const profile = await writeTestProfile({
    directory,
    devicePath: pedalPty.devicePath,
    destinations: [{ name: 'orthanc', host: '127.0.0.1', port: orthanc.dicomPort, calledAeTitle: orthanc.aeTitle }],
    sections: { hl7: { host: '127.0.0.1', port: hl7Port, allowedPeers: ['127.0.0.1'], patientIdAuthority: 'HOSP-A' } },
  });
  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('HL7 listener started');
  await daemon.waitForLog('video signal acquired');
  await daemon.waitForLog('footswitch connected');

  const placed = await sendWithPythonHl7(hl7Port, [
    { op: 'send', message: message(...latinOrder.segments()), encoding: latinOrder.encoding },
    { op: 'split', message: message(...utf8Order.segments()), encoding: utf8Order.encoding, parts: 3, pauseMs: 200 },
  ]);
  t.same(placed.map((result) => result.ack?.msa1), ['AA', 'AA']);

  const cli = (args: string[]): Promise<{ stdout: string; stderr: string }> => run(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args, '--profile', profile]);
  const pedal = await open(pedalPty.testPath, 'w');
  t.teardown(() => pedal.close());

  // Exam 1: the Latin-1 order.
  t.match((await cli(['exam', 'start', '--accession', latinOrder.accessionNumber])).stdout, /^exam E\d{8}-\d{6} started/);
  await press(pedal);
  await daemon.waitForLog('still captured', 1);
  t.match((await cli(['exam', 'end'])).stdout, /ended: completed, 1 object/);

  // Exam 2: the UTF-8 order, cancelled while its exam is open. The exam goes on.
  t.match((await cli(['exam', 'start', '--patient-id', utf8Order.patientId])).stdout, /started/);
  const cancel = message(
    msh('OMI^O23^OMI_O23', 'CAN0001', 'UNICODE UTF-8'),
    segment('PID', { 1: '1', 3: `${utf8Order.patientId}^^^HOSP-A^MR` }),
    segment('ORC', { 1: 'CA', 2: 'PLC-UTF-1', 3: 'FIL-UTF-1' }),
    segment('OBR', { 1: '1', 2: 'PLC-UTF-1', 3: 'FIL-UTF-1', 4: 'GASTRO^Gastroskopie^L' }),
    segment('IPC', { 1: utf8Order.accessionNumber, 2: 'RP552', 4: 'SPS552' }),
  );
  const cancelled = await sendWithPythonHl7(hl7Port, [{ op: 'send', message: cancel, encoding: 'utf-8' }]);
  t.equal(cancelled[0]?.ack?.msa1, 'AA');
  await daemon.waitForLog('order of the open exam cancelled; the exam stays open');
  await press(pedal);
  await daemon.waitForLog('still captured', 2);
  const status = await cli(['exam', 'status']);
  t.match(status.stdout, /hl7: listening on port \d+, 1 open order, 3 messages accepted, 0 rejected/);
  const listed = await cli(['worklist', 'list', '--names']);
  t.match(listed.stdout, new RegExp(`^${latinOrder.accessionNumber} .*${latinOrder.patientId}  \\(HL7 order\\)$`, 'm'), 'the open order is listed for the console, with --names');
  t.notMatch(listed.stdout, utf8Order.accessionNumber, 'the cancelled order is not');
  t.match(listed.stderr, /^1 open HL7 order$/m);
  t.match((await cli(['exam', 'end'])).stdout, /ended: completed, 1 object/);
  await cli(['exam', 'start', '--accession', utf8Order.accessionNumber]).then(
    () => t.fail('a cancelled order must not be selectable'),
    (error: { code?: number; stderr?: string }) => {
      t.equal(error.code, 1);
      t.match(error.stderr ?? '', /no worklist entry matches the accession number/);
    },
  );

  await waitFor(async () => (await orthanc.get<string[]>('/instances')).length >= 2, 60_000, 'two instances in Orthanc');
  const objects: ObjectAttributes[] = [];
  for (const [index, instanceId] of (await orthanc.get<string[]>('/instances')).entries()) {
    const file = path.join(directory, `instance-${index}.dcm`);
    await writeFile(file, await orthanc.file(instanceId));
    t.same((await validateIod(file)).errors, [], `dciodvfy finds no errors in instance ${index}`);
    objects.push(await readObject(file));
  }

  for (const order of [latinOrder, utf8Order]) {
    const object = objects.find((candidate) => candidate.PatientID === order.patientId);
    t.ok(object, `object of the ${order.encoding} order`);
    t.equal(object?.PatientName, order.patientName, `${order.encoding} name`);
    t.equal(object?.PatientNameHex, Buffer.from(order.patientName, 'utf8').toString('hex'), `${order.encoding} name bytes are its UTF-8`);
    t.equal(object?.SpecificCharacterSet, 'ISO_IR 192');
    t.equal(object?.PatientIDHex, Buffer.from(order.patientId, 'ascii').toString('hex'), 'patient ID bytes');
    t.equal(object?.IssuerOfPatientID, order.issuer);
    t.equal(object?.AccessionNumber, order.accessionNumber);
    t.equal(object?.Request.AccessionNumber, order.accessionNumber);
    t.equal(object?.PatientBirthDate, order.birthDate);
    t.equal(object?.StudyInstanceUID, order.studyInstanceUid);
    t.equal(object?.StudyDescription, order.description);
  }

  t.equal(await daemon.stop(), 0, 'daemon stops cleanly');
  const listedStopped = await cli(['worklist', 'list', '--json']);
  t.same(
    (JSON.parse(listedStopped.stdout) as { orders: Array<{ accessionNumber: string }> }).orders.map((entry) => entry.accessionNumber),
    [latinOrder.accessionNumber],
    'with the daemon stopped, the order file is read',
  );
  const output = daemon.output();
  const planted = [latinOrder, utf8Order].flatMap((order) => [order.patientName, ...order.patientName.split('^'), order.patientId, order.accessionNumber, order.birthDate, order.description, order.studyInstanceUid]);
  planted.push('OTHERID77', 'Weiß', 'Käthe', 'Groß', 'VISIT551', 'PLC-LAT-1', 'FIL-UTF-1', 'RP551', 'SPS552', 'Koloskopie', 'Gastroskopie');
  for (const value of planted.filter((text) => text.length >= 3)) {
    t.notOk(output.includes(value), `order value ${JSON.stringify(value)} appears in no log line`);
  }
});
