import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ControlClient } from '../../src/cli/control-client.js';
import { buildVlEndoscopicImage } from '../../src/dicom/vl-endoscopic.js';
import { commandResponseSchema, type CommandResponse } from '../../src/telemetry/payloads.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';
import { startFakeScp, startStorescp } from '../pacs/peers.js';
import { pressPedal, type StatusView } from './daemon-harness.js';
import { observe } from './helpers.js';

/** Patient data planted in an object of the exam; none of it may reach the broker or a log line. */
const PLANTED = {
  patientName: 'PLANTEDFAMILY^PLANTEDGIVEN',
  patientId: 'PID-PLANTED-4711',
  birthDate: '19710203',
  accessionNumber: 'ACC-PLANTED-0815',
};
const PLANTED_STRINGS = [PLANTED.patientName, 'PLANTEDFAMILY', 'PLANTEDGIVEN', PLANTED.patientId, PLANTED.birthDate, PLANTED.accessionNumber];
const UID_ROOT = '1.2.826.0.1.3680043.10.1437';

function plantedObject(): Buffer {
  const at = new Date();
  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x30, 0x00, 0x40, 0x03, 0x01, 0x21, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]), Buffer.alloc(2_000, 0x55), Buffer.from([0xff, 0xd9])]);
  return buildVlEndoscopicImage({
    jpeg,
    width: 64,
    height: 48,
    acquiredAt: at,
    sopInstanceUid: `${UID_ROOT}.99.1`,
    station: { aeTitle: 'ENDOCAP_TEST', stationName: 'TEST-TOWER', institutionName: '', departmentName: '', uidRoot: UID_ROOT, deviceSerialNumber: 'BOX-1', softwareVersion: '0.1.0' },
    study: {
      studyInstanceUid: `${UID_ROOT}.99`,
      studyId: '1',
      accessionNumber: PLANTED.accessionNumber,
      studyDate: at,
      patientName: PLANTED.patientName,
      patientId: PLANTED.patientId,
      patientBirthDate: PLANTED.birthDate,
    },
    series: { seriesInstanceUid: `${UID_ROOT}.99.1.1`, seriesNumber: 1, seriesDate: at },
    instanceNumber: 1,
  });
}

t.test('every command answers and no message of an exam carries patient data', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-commands-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const dicomPort = await freePort();
  const received = path.join(directory, 'received');
  await mkdir(received);
  const storescp = await startStorescp({ port: dicomPort, aeTitle: 'STORESCP', outputDirectory: received, args: ['+xa'] });
  t.teardown(() => storescp.stop());
  // A second PACS that rejects every object for good, so objects get set aside.
  const rejecting = await startFakeScp({ kind: 'status', status: 0xa900 });
  t.teardown(() => rejecting.stop());
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'pedal-test'));
  t.teardown(() => pty.unplug());

  const everything = await observe(broker, '#', { protocolVersion: 5 });
  t.teardown(() => everything.close());
  const profileOptions = {
    directory,
    devicePath: pty.devicePath,
    mqttUrl: broker.url,
    mqtt: { commands: { enabled: true }, homeAssistant: { enabled: true }, sparkplug: { enabled: true, groupId: 'endoscopy' } },
    destinations: [
      { name: 'pacs', host: '127.0.0.1', port: dicomPort, calledAeTitle: 'STORESCP' },
      { name: 'archive', host: '127.0.0.1', port: rejecting.port, calledAeTitle: 'ARCHIVE' },
    ],
  };
  const profileFile = await writeTestProfile(profileOptions);
  const daemon = startDaemon(profileFile);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('daemon started');
  await everything.waitFor((messages) => messages.some((message) => message.topic === 'endocap-test/test-box/availability' && message.text === 'online'), 'online');

  let sequence = 0;
  const ask = async (name: string, payload: Record<string, unknown> | string = {}): Promise<CommandResponse> => {
    sequence += 1;
    const correlationId = `req-${sequence}`;
    const body = typeof payload === 'string' ? payload : JSON.stringify({ ...payload, correlationId, responseTopic: 'ops/replies' });
    await everything.client.publishAsync(`endocap-test/test-box/commands/${name}`, body, { qos: 1 });
    const find = (): CommandResponse | undefined =>
      everything.messages
        .filter((message) => message.topic === 'ops/replies' || message.topic.startsWith('endocap-test/test-box/responses/'))
        .map((message) => commandResponseSchema.parse(JSON.parse(message.text)))
        .find((response) => (typeof payload === 'string' ? response.command === name && response.correlationId === undefined : response.correlationId === correlationId));
    await waitFor(() => find() !== undefined, 70_000, `response to ${name}`);
    return find() as CommandResponse;
  };
  // The box subscribes to its command topic just after connecting.
  await waitFor(async () => (await ask('ping')).ok, 10_000, 'ping');

  // The exam: stills from the pedal, and an object with patient data imported through the control socket.
  await daemon.waitForLog('footswitch connected');
  await daemon.waitForLog('video signal acquired');
  await pressPedal(pty.testPath, 3);
  const control = await ControlClient.connect(path.join(directory, 'state', 'control.sock'));
  if (!control) throw new Error('control socket not reachable');
  const imported = await control.request({ command: 'queue-import', part10: plantedObject().toString('base64') });
  control.close();
  t.equal(imported.outcome, 'imported');
  await daemon.waitForLog('object set aside', 4);
  await daemon.waitForLog('object stored', 4);

  const ping = await ask('ping');
  t.match(ping, { ok: true, command: 'ping', result: { pong: true, boxId: 'test-box' } });
  t.ok((ping.result as { commands: string[] }).commands.includes('retry-set-aside'));

  const status = await ask('status');
  t.equal(status.ok, true);
  const statusResult = status.result as StatusView;
  t.equal(statusResult.destinations.archive?.setAside, 4, 'status counts the set-aside objects');
  t.ok(statusResult.alarms.includes('objects-set-aside.archive'), 'set-aside objects raise an alarm');

  const echo = await ask('echo-destinations');
  const echoes = (echo.result as { destinations: Array<{ name: string; ok: boolean }> }).destinations;
  t.same(echoes.map((entry) => entry.name), ['pacs', 'archive'], 'one C-ECHO result per destination');
  t.equal(echoes[0]?.ok, true, 'storescp answers C-ECHO');

  const retried = await ask('retry-set-aside', { args: { destination: 'archive' } });
  t.equal((retried.result as { requeued: unknown[] }).requeued.length, 4, 'set-aside objects queued again');
  await daemon.waitForLog('object set aside', 8);
  t.match(await ask('retry-set-aside', { args: { destination: 'nowhere' } }), { ok: false, error: { code: 'COMMAND_INVALID' } });
  t.match(await ask('select-procedure', { args: { procedureId: 'sps-1' } }), { ok: false, error: { code: 'COMMAND_UNAVAILABLE' } });
  t.match(await ask('end-exam'), { ok: false, error: { code: 'COMMAND_UNAVAILABLE' } });
  t.match(await ask('format-disk'), { ok: false, error: { code: 'COMMAND_UNKNOWN' } });
  t.match(await ask('ping', { args: { extra: 1 } }), { ok: false, error: { code: 'COMMAND_INVALID' } });
  t.match(await ask('status', '{"args":'), { ok: false, error: { code: 'COMMAND_INVALID' } }, 'malformed JSON answered on the default topic');
  t.match(await ask('ping', '[1,2,3]'), { ok: false, error: { code: 'COMMAND_INVALID' } });

  // An invalid profile on disk is rejected and the running one stays.
  const validText = await readFile(profileFile, 'utf8');
  await writeFile(profileFile, validText.replace('stationName: TEST-TOWER', 'stationName: 42'));
  const invalid = await ask('reload-profile');
  t.match(invalid, { ok: false, error: { code: 'PROFILE_INVALID', message: /station\.stationName: expected string/ } });
  t.equal(daemon.count('daemon started'), 1, 'the daemon keeps running');

  // A valid, changed profile restarts the daemon with it.
  await writeFile(profileFile, validText.replace('description: test profile', 'description: test profile, reloaded'));
  const reloaded = await ask('reload-profile');
  t.match(reloaded, { ok: true, result: { valid: true, restarting: true } });
  await daemon.waitForLog('daemon started', 2);
  t.equal(daemon.count('restarting with the reloaded profile'), 1);
  t.match(await ask('ping'), { ok: true }, 'commands work after the restart');
  t.equal(await daemon.stop(), 0);

  const receivedFiles = await readdir(received);
  const contents = await Promise.all(receivedFiles.map((file) => readFile(path.join(received, file), 'latin1')));
  t.ok(contents.some((content) => content.includes(PLANTED.patientId)), 'the planted patient data went through the box to the PACS');

  // Every topic and payload (Sparkplug's protobuf strings are UTF-8 inside the bytes) and every log line.
  const messages = everything.messages.map((message) => `${message.topic}\n${message.payload.toString('latin1')}`).join('\n');
  t.ok(everything.messages.length > 100, `${everything.messages.length} messages scanned`);
  t.ok(everything.messages.some((message) => message.topic.startsWith('spBv1.0/')), 'Sparkplug messages scanned');
  t.ok(everything.messages.some((message) => message.topic.startsWith('homeassistant/')), 'discovery messages scanned');
  for (const value of PLANTED_STRINGS) {
    t.notOk(messages.includes(value), `${value} appears in no MQTT topic or payload`);
    t.notOk(daemon.output().includes(value), `${value} appears in no log line`);
  }
});
