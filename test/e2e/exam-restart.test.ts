import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import t from 'tap';
import { startDaemon, type DaemonProcess } from '../helpers/daemon-process.js';
import { PYTHON, validateIod } from '../helpers/dicom-tools.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';
import { asciiEntry, today } from '../worklist/fixtures.js';
import { decodeMpps, startMppsReceiver } from '../worklist/mpps-receiver.js';
import { ENDOSCOPE_JIS, ENDOSCOPE_UNICODE, startWlmscpfs, writeWorklistFiles, YAMADA_JIS, YAMADA_UNICODE } from '../worklist/peers.js';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Log messages in the order they were printed. */
function messagesOf(daemon: DaemonProcess): string[] {
  return daemon.lines.map((line) => line.msg);
}

t.test('exam survives a restart with the worklist server down', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-e2e-exam-restart-'));
  await writeWorklistFiles(path.join(directory, 'worklists', 'WLMSCP'), [
    {
      characterSet: '\\ISO 2022 IR 87',
      patientName: YAMADA_JIS,
      patientId: 'PIDRESTARTQ8',
      birthDate: '19270805',
      sex: 'M',
      accessionNumber: 'ACCRESTARTQ8',
      studyInstanceUid: '1.2.826.0.1.3680043.10.1437.44.1',
      stepDescription: ENDOSCOPE_JIS,
      startDate: today,
    },
    asciiEntry('ACCSECONDQ8', { patientId: 'PIDSECONDQ8', patientName: Buffer.from('Second^Patient'), birthDate: '19380214' }),
  ]);
  const worklist = await startWlmscpfs({ directory: path.join(directory, 'worklists'), aeTitle: 'WLMSCP' });
  const orthanc = await startOrthanc();
  const broker = await startMosquitto();
  const receiver = await startMppsReceiver(path.join(directory, 'mpps'));
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(async () => {
    await pty.unplug();
    await receiver.stop();
    await broker.stop();
    await orthanc.stop();
    await worklist.stop();
    await rm(directory, { recursive: true, force: true });
  });

  const messages: Array<{ topic: string; payload: string }> = [];
  const observer = await mqtt.connectAsync(broker.url);
  await observer.subscribeAsync('#');
  observer.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
  t.teardown(() => observer.endAsync());

  const service = { host: '127.0.0.1', connectTimeoutMs: 1_000, associationTimeoutMs: 3_000, requestTimeoutMs: 5_000 };
  const profile = await writeTestProfile({
    directory,
    devicePath: pty.devicePath,
    destinations: [{ name: 'orthanc', host: '127.0.0.1', port: orthanc.dicomPort, calledAeTitle: orthanc.aeTitle }],
    gestures: { short: 'still', long: 'clip' },
    longPressMs: 300,
    sections: {
      mqtt: { url: broker.url, topicPrefix: 'endocap-test', statusIntervalMs: 1_000 },
      worklist: { ...service, port: worklist.port, calledAeTitle: 'WLMSCP', retry: { initialMs: 300, maxMs: 1_000 } },
      mpps: { ...service, port: receiver.port, calledAeTitle: 'MPPS', retry: { initialMs: 200, maxMs: 1_000 } },
      clip: { preRecordSeconds: 1, encoder: { preset: 'ultrafast', keyFrameIntervalSeconds: 0.5 } },
    },
  });
  const cli = (args: string[]): Promise<{ stdout: string }> => run(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args, '--profile', profile]);
  const pressPedal = async (holdMs: number): Promise<void> => {
    const pedal = await open(pty.testPath, 'w');
    await pedal.write(Buffer.from([0x31]));
    await sleep(holdMs);
    await pedal.write(Buffer.from([0x30]));
    await pedal.close();
    await sleep(400);
  };

  let daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('worklist updated');
  await daemon.waitForLog('footswitch connected');
  await daemon.waitForLog('video signal acquired');
  const started = await cli(['exam', 'start', '--accession', 'ACCRESTARTQ8']);
  const examId = /exam (E\d{8}-\d{6}) started/.exec(started.stdout)?.[1];
  t.ok(examId, 'exam started from the CLI');
  await pressPedal(60);
  await daemon.waitForLog('still captured');
  await daemon.waitForLog('MPPS message accepted');
  const firstOutput = daemon.output();

  // A crash in the middle of the exam, and the worklist server goes down meanwhile.
  await daemon.kill();
  await worklist.stop();
  daemon = startDaemon(profile);
  await daemon.waitForLog('exam continues after restart');
  await daemon.waitForLog('worklist query failed, cached entries kept');
  await daemon.waitForLog('clip encoder opened');
  await daemon.waitForLog('footswitch connected');
  const status = JSON.parse((await cli(['exam', 'status', '--json'])).stdout) as { exam: { examId: string; stills: number }; worklist: { entries: number; cacheAgeMs: number; lastError: string } };
  t.equal(status.exam.examId, examId, 'the same exam after the restart');
  t.equal(status.exam.stills, 1);
  t.equal(status.worklist.entries, 2, 'the cached worklist is in use');
  t.match(status.worklist.lastError, /worklist query to 127\.0\.0\.1:\d+ failed: connection refused/);
  await waitFor(
    () => messages.some((message) => message.topic === 'endocap-test/test-box/alarms' && message.payload.includes('worklist-unreachable')),
    10_000,
    'worklist-unreachable alarm',
  );
  const lastStatus = JSON.parse(messages.filter((message) => message.topic === 'endocap-test/test-box/status').at(-1)?.payload ?? '{}') as { worklist?: { cacheAgeSeconds: number | null }; exam?: { active: boolean } };
  t.type(lastStatus.worklist?.cacheAgeSeconds, 'number', 'telemetry says how old the cache is');
  t.equal(lastStatus.exam?.active, true);

  // One more still, then the exam ends while a clip is recording.
  await sleep(1_200);
  await pressPedal(60);
  await daemon.waitForLog('still captured');
  await pressPedal(400);
  await daemon.waitForLog('clip started');
  await sleep(800);
  const ended = await cli(['exam', 'end']);
  t.match(ended.stdout, new RegExp(`exam ${examId} ended: completed`));
  const order = messagesOf(daemon);
  t.ok(order.lastIndexOf('clip captured') !== -1 && order.lastIndexOf('clip captured') < order.lastIndexOf('exam ended'), 'the clip is stored before the exam ends');

  // A procedure from the cache while the server is down, ended with nothing captured.
  const second = await cli(['exam', 'start', '--patient-id', 'PIDSECONDQ8']);
  t.match(second.stdout, /started/);
  const abandoned = await cli(['exam', 'end']);
  t.match(abandoned.stdout, /ended: discontinued, 0 objects/);

  await waitFor(async () => (await orthanc.get<string[]>('/instances')).length >= 3, 60_000, 'two stills and a clip in Orthanc');
  await waitFor(() => receiver.received.length >= 4, 20_000, 'four MPPS messages');
  const studies = new Map<string, string[]>();
  for (const [index, instanceId] of (await orthanc.get<string[]>('/instances')).entries()) {
    const file = path.join(directory, `instance-${index}.dcm`);
    await writeFile(file, await orthanc.file(instanceId));
    t.same((await validateIod(file)).errors, [], `dciodvfy finds no errors in instance ${index}`);
    const script = path.join(root, 'test/worklist/read_object.py');
    const object = JSON.parse((await run(PYTHON, [script, file])).stdout) as { StudyInstanceUID: string; SOPInstanceUID: string; PatientName: string; PatientNameHex: string; Request: { ScheduledProcedureStepDescription?: string } };
    studies.set(object.StudyInstanceUID, [...(studies.get(object.StudyInstanceUID) ?? []), object.SOPInstanceUID]);
    if (object.StudyInstanceUID === '1.2.826.0.1.3680043.10.1437.44.1') {
      t.equal(object.PatientName, YAMADA_UNICODE);
      t.equal(object.PatientNameHex, Buffer.from(YAMADA_UNICODE, 'utf8').toString('hex'), 'ISO 2022 IR 87 name stored as its UTF-8 bytes');
      t.equal(object.Request.ScheduledProcedureStepDescription, ENDOSCOPE_UNICODE);
    }
  }
  const examObjects = studies.get('1.2.826.0.1.3680043.10.1437.44.1') ?? [];
  t.ok(examObjects.length >= 2, 'both stills, before and after the restart, in the worklist study');

  const decoded = await Promise.all(receiver.received.map((message) => decodeMpps(message.file)));
  t.same(decoded.map((message) => message.PerformedProcedureStepStatus), ['IN PROGRESS', 'COMPLETED', 'IN PROGRESS', 'DISCONTINUED']);
  t.equal(decoded[0]?.PerformedProcedureStepID, examId);
  t.same(decoded[1]?.PerformedSeries.flatMap((series) => series.References.map(([, uid]) => uid)).sort(), [...examObjects].sort(), 'the MPPS lists every object of the exam');
  t.equal(decoded[3]?.DiscontinuationReason, '110513');

  t.equal(await daemon.stop(), 0);
  const everything = `${firstOutput}\n${daemon.output()}\n${messages.map((message) => `${message.topic} ${message.payload}`).join('\n')}`;
  for (const value of [YAMADA_UNICODE, '山田', 'Yamada', 'PIDRESTARTQ8', 'ACCRESTARTQ8', '19270805', 'Second^Patient', 'PIDSECONDQ8', 'ACCSECONDQ8', '19380214', ENDOSCOPE_UNICODE]) {
    t.notOk(everything.includes(value), `patient value ${JSON.stringify(value)} appears in no log line or MQTT message`);
  }
});
