import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import t from 'tap';
import { startDaemon } from '../helpers/daemon-process.js';
import { PYTHON, validateIod } from '../helpers/dicom-tools.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';
import { today } from '../worklist/fixtures.js';
import { decodeMpps, startMppsReceiver } from '../worklist/mpps-receiver.js';
import { ENDOSCOPE_JIS, ENDOSCOPE_UNICODE, startOrthancWithWorklists, writeWorklistFiles, YAMADA_JIS, YAMADA_UNICODE, type TestEntry } from '../worklist/peers.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');

/** One planted procedure per character set, with the Unicode text each must come out as. */
const procedures: Array<{ entry: TestEntry; name: string; stepDescription: string; birthDate: string }> = [
  {
    entry: {
      characterSet: 'ISO_IR 100',
      patientName: Buffer.from('Müllerßon^Jürgen', 'latin1'),
      patientId: 'PIDLATINQ7',
      issuerOfPatientId: 'HOSPITAL-A',
      birthDate: '19330417',
      sex: 'M',
      accessionNumber: 'ACCLATINQ7',
      studyInstanceUid: '1.2.826.0.1.3680043.10.1437.55.1',
      stepDescription: Buffer.from('Koloskopie für Übung', 'latin1'),
      requestedProcedureDescription: Buffer.from('Darmspiegelung mit Größe', 'latin1'),
      startDate: today,
    },
    name: 'Müllerßon^Jürgen',
    stepDescription: 'Koloskopie für Übung',
    birthDate: '19330417',
  },
  {
    entry: {
      characterSet: '\\ISO 2022 IR 87',
      patientName: YAMADA_JIS,
      patientId: 'PIDJISQ7',
      birthDate: '19290911',
      sex: 'M',
      accessionNumber: 'ACCJISQ7',
      studyInstanceUid: '1.2.826.0.1.3680043.10.1437.55.2',
      stepDescription: ENDOSCOPE_JIS,
      startDate: today,
    },
    name: YAMADA_UNICODE,
    stepDescription: ENDOSCOPE_UNICODE,
    birthDate: '19290911',
  },
  {
    entry: {
      characterSet: 'ISO_IR 192',
      patientName: Buffer.from('Ærøskøbingová^Ŝŭé', 'utf8'),
      patientId: 'PIDUTFQ7',
      birthDate: '19410623',
      sex: 'F',
      accessionNumber: 'ACCUTFQ7',
      // No Study Instance UID: the exam generates one.
      studyInstanceUid: '',
      stepDescription: Buffer.from('Gastroskopie ñ — 胃カメラ', 'utf8'),
      startDate: today,
    },
    name: 'Ærøskøbingová^Ŝŭé',
    stepDescription: 'Gastroskopie ñ — 胃カメラ',
    birthDate: '19410623',
  },
];

interface ObjectAttributes {
  SpecificCharacterSet: string;
  SOPInstanceUID: string;
  PatientName: string;
  PatientNameHex: string;
  PatientID: string;
  IssuerOfPatientID: string;
  PatientBirthDate: string;
  AccessionNumber: string;
  StudyInstanceUID: string;
  SeriesInstanceUID: string;
  StudyDescription: string;
  ReferencedMpps: string;
  Request: { ScheduledProcedureStepDescription?: string; ScheduledProcedureStepDescriptionHex?: string; AccessionNumber?: string };
}

async function readObject(file: string): Promise<ObjectAttributes> {
  const script = path.join(root, 'test/worklist/read_object.py');
  const { stdout } = await run(PYTHON, [script, file]);
  return JSON.parse(stdout) as ObjectAttributes;
}

async function press(pedal: Awaited<ReturnType<typeof open>>, holdMs: number): Promise<void> {
  await pedal.write(Buffer.from([0x31]));
  await new Promise((resolve) => setTimeout(resolve, holdMs));
  await pedal.write(Buffer.from([0x30]));
  await new Promise((resolve) => setTimeout(resolve, 400));
}

t.test('exams from the worklist reach Orthanc with their context', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-e2e-exam-'));
  const orthanc = await startOrthancWithWorklists();
  await writeWorklistFiles(orthanc.worklistDirectory, procedures.map((procedure) => procedure.entry));
  const broker = await startMosquitto();
  const receiver = await startMppsReceiver(path.join(directory, 'mpps'));
  const pedalPty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  const scannerPty = await startPtyPair(path.join(directory, 'scanner'), path.join(directory, 'scanner-test'));
  t.teardown(async () => {
    await pedalPty.unplug();
    await scannerPty.unplug();
    await receiver.stop();
    await broker.stop();
    await orthanc.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const messages: Array<{ topic: string; payload: string }> = [];
  const observer = await mqtt.connectAsync(broker.url);
  await observer.subscribeAsync('#');
  observer.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  t.teardown(() => observer.endAsync());

  const dicomService = { host: '127.0.0.1', calledAeTitle: 'ORTHANC', connectTimeoutMs: 2_000, associationTimeoutMs: 5_000, requestTimeoutMs: 10_000 };
  const profile = await writeTestProfile({
    directory,
    devicePath: pedalPty.devicePath,
    destinations: [{ name: 'orthanc', host: '127.0.0.1', port: orthanc.dicomPort, calledAeTitle: orthanc.aeTitle }],
    gestures: { short: 'still', long: 'end-exam' },
    longPressMs: 700,
    sections: {
      mqtt: { url: broker.url, topicPrefix: 'endocap-test', statusIntervalMs: 1_000, commands: { enabled: true } },
      worklist: { ...dicomService, port: orthanc.dicomPort, retry: { initialMs: 500, maxMs: 2_000 } },
      mpps: { ...dicomService, port: receiver.port, calledAeTitle: 'MPPS', retry: { initialMs: 200, maxMs: 1_000 } },
      exam: { barcode: { path: scannerPty.devicePath, reopenIntervalMs: 300 } },
    },
  });
  const daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('worklist updated');
  await daemon.waitForLog('barcode scanner connected');
  await daemon.waitForLog('video signal acquired');
  await daemon.waitForLog('footswitch connected');

  // Exam 1: selected with the barcode scanner, after noise and a code of no procedure.
  const scanner = await open(scannerPty.testPath, 'w');
  await scanner.write(Buffer.from('\x02\x07garbage\r\nAB\r\nNOSUCHCODE42\r\n'));
  await daemon.waitForLog('procedure selection failed');
  t.equal(daemon.count('barcode line ignored as noise'), 2, 'control characters and a short line are noise');
  await scanner.write(Buffer.from('ACCLATINQ7\r\n'));
  await daemon.waitForLog('exam started');
  const pedal = await open(pedalPty.testPath, 'w');
  await press(pedal, 60);
  await press(pedal, 60);
  await daemon.waitForLog('still captured', 2);
  await press(pedal, 900);
  await daemon.waitForLog('exam ended');

  // Exam 2: selected and ended by MQTT commands; an unknown accession number first.
  const responses: Array<{ command: string; correlationId?: string; ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } }> = [];
  const requester = await mqtt.connectAsync(broker.url);
  t.teardown(() => requester.endAsync());
  await requester.subscribeAsync('endocap-test/test-box/responses/#');
  requester.on('message', (_topic, payload) => responses.push(JSON.parse(payload.toString()) as (typeof responses)[number]));
  const command = async (name: string, args: Record<string, unknown>, correlationId: string): Promise<(typeof responses)[number]> => {
    await requester.publishAsync(`endocap-test/test-box/commands/${name}`, JSON.stringify({ args, correlationId }), { qos: 1 });
    await waitFor(() => responses.some((response) => response.correlationId === correlationId), 30_000, `response to ${correlationId}`);
    return responses.find((response) => response.correlationId === correlationId) ?? { command: name, ok: false };
  };
  const unknown = await command('select-procedure', { accessionNumber: 'NOSUCHACC99' }, 'c1');
  t.equal(unknown.ok, false);
  t.equal(unknown.error?.code, 'EXAM_NO_MATCH');
  t.notMatch(JSON.stringify(unknown), /NOSUCHACC99/, 'the error does not repeat the accession number');
  const selected = await command('select-procedure', { accessionNumber: 'ACCJISQ7' }, 'c2');
  t.equal(selected.ok, true);
  t.match(selected.result?.examId, /^E\d{8}-\d{6}$/);
  await press(pedal, 60);
  await press(pedal, 60);
  await daemon.waitForLog('still captured', 4);
  const ended = await command('end-exam', {}, 'c3');
  t.same(ended.result, { examId: selected.result?.examId, outcome: 'completed', objects: 2 });

  // Exam 3: selected and ended on the box with the CLI.
  const cli = (args: string[]): Promise<{ stdout: string }> => run(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args, '--profile', profile]);
  const started = await cli(['exam', 'start', '--accession', 'ACCUTFQ7']);
  t.match(started.stdout, /^exam E\d{8}-\d{6} started/);
  await press(pedal, 60);
  await daemon.waitForLog('still captured', 5);
  const status = await cli(['exam', 'status']);
  t.match(status.stdout, /1 still, 0 clips/);
  t.notMatch(status.stdout, /ACCUTFQ7|Ærøskøbing/, 'status shows no patient data');
  const cliEnd = await cli(['exam', 'end']);
  t.match(cliEnd.stdout, /ended: completed, 1 object/);
  await cli(['exam', 'end']).then(
    () => t.fail('a second end must fail'),
    (error: { stderr?: string; code?: number }) => {
      t.equal(error.code, 1);
      t.match(error.stderr ?? '', /no exam is open/);
    },
  );

  // A still with no exam open goes to the unidentified-patient study, as before.
  await press(pedal, 60);
  await daemon.waitForLog('still captured', 6);

  await waitFor(async () => (await orthanc.get<string[]>('/instances')).length >= 6, 60_000, 'six instances in Orthanc');
  await waitFor(() => receiver.received.length >= 6, 20_000, 'three N-CREATE and three N-SET');

  const objects: ObjectAttributes[] = [];
  for (const [index, instanceId] of (await orthanc.get<string[]>('/instances')).entries()) {
    const file = path.join(directory, `instance-${index}.dcm`);
    await writeFile(file, await orthanc.file(instanceId));
    t.same((await validateIod(file)).errors, [], `dciodvfy finds no errors in instance ${index}`);
    objects.push(await readObject(file));
  }

  for (const procedure of procedures) {
    const mine = objects.filter((object) => object.PatientID === procedure.entry.patientId);
    const label = procedure.entry.characterSet ?? 'none';
    t.ok(mine.length > 0, `objects of the ${label} procedure`);
    for (const object of mine) {
      t.equal(object.SpecificCharacterSet, 'ISO_IR 192');
      t.equal(object.PatientName, procedure.name, `${label} name`);
      t.equal(object.PatientNameHex, Buffer.from(procedure.name, 'utf8').toString('hex'), `${label} name bytes are its UTF-8`);
      t.equal(object.Request.ScheduledProcedureStepDescription, procedure.stepDescription, `${label} text from inside the step sequence`);
      t.equal(object.Request.ScheduledProcedureStepDescriptionHex, Buffer.from(procedure.stepDescription, 'utf8').toString('hex'));
      t.equal(object.AccessionNumber, procedure.entry.accessionNumber);
      t.equal(object.Request.AccessionNumber, procedure.entry.accessionNumber);
      t.equal(object.PatientBirthDate, procedure.birthDate);
      t.not(object.ReferencedMpps, '', 'the series references the MPPS');
    }
    t.equal(new Set(mine.map((object) => object.StudyInstanceUID)).size, 1, `${label}: one study`);
    t.equal(new Set(mine.map((object) => object.AccessionNumber)).size, 1, `${label}: one accession number`);
    if (procedure.entry.studyInstanceUid !== '') t.equal(mine[0]?.StudyInstanceUID, procedure.entry.studyInstanceUid, `${label}: the worklist's Study Instance UID`);
  }
  const latin = objects.find((object) => object.PatientID === 'PIDLATINQ7');
  t.equal(latin?.IssuerOfPatientID, 'HOSPITAL-A');
  t.equal(latin?.StudyDescription, 'Darmspiegelung mit Größe');
  t.equal(objects.filter((object) => object.PatientID.startsWith('UNID-')).length, 1, 'one unidentified still');

  const decoded = await Promise.all(receiver.received.map((message) => decodeMpps(message.file)));
  t.same(decoded.map((message) => message.PerformedProcedureStepStatus), ['IN PROGRESS', 'COMPLETED', 'IN PROGRESS', 'COMPLETED', 'IN PROGRESS', 'COMPLETED']);
  for (const [index, completed] of decoded.entries()) {
    if (completed.PerformedProcedureStepStatus !== 'COMPLETED') continue;
    const created = decoded[index - 1];
    const references = completed.PerformedSeries.flatMap((series) => series.References.map(([, uid]) => uid));
    const study = objects.filter((object) => object.StudyInstanceUID === created?.ScheduledStep?.StudyInstanceUID);
    t.same(references.sort(), study.map((object) => object.SOPInstanceUID).sort(), `MPPS ${index} lists exactly the objects of its study`);
    t.same(completed.PerformedSeries.map((series) => series.SeriesInstanceUID), [...new Set(study.map((object) => object.SeriesInstanceUID))]);
  }
  t.equal(decoded[2]?.PatientName, YAMADA_UNICODE, 'the MPPS carries the name in UTF-8');

  await waitFor(() => messages.some((message) => message.topic.endsWith('/events/exam-ended')), 10_000, 'exam-ended event');
  t.equal(messages.filter((message) => message.topic.endsWith('/events/exam-started')).length, 3);
  const status0 = messages.filter((message) => message.topic === 'endocap-test/test-box/status').at(-1);
  t.match(JSON.parse(status0?.payload ?? '{}'), { worklist: { configured: true }, barcodeReader: { configured: true, connected: true } });

  t.equal(await daemon.stop(), 0, 'daemon stops cleanly');
  // Requests are what the test itself published; everything else came from the box.
  const fromBox = messages.filter((message) => !message.topic.includes('/commands/'));
  const everything = `${daemon.output()}\n${fromBox.map((message) => `${message.topic} ${message.payload}`).join('\n')}`;
  const planted = procedures.flatMap((procedure) => [procedure.name, ...procedure.name.split(/[=^]/), procedure.entry.patientId, procedure.entry.accessionNumber, procedure.birthDate, procedure.stepDescription]);
  planted.push(Buffer.from('Müllerßon', 'latin1').toString('latin1'), 'NOSUCHCODE42', 'NOSUCHACC99', 'HOSPITAL-A');
  for (const value of planted.filter((text) => text.length >= 2)) {
    t.notOk(everything.includes(value), `patient value ${JSON.stringify(value)} appears in no log line or MQTT message`);
  }
});
