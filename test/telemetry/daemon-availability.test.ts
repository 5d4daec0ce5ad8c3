import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { startDaemon } from '../helpers/daemon-process.js';
import { startMosquitto, startMosquittoOnPort } from '../helpers/mosquitto.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { observe } from './helpers.js';

const FAST_RECONNECT = { reconnect: { initialMs: 200, maxMs: 1_000, multiplier: 2 } };

t.test('availability follows kill, restart and broker restart', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-availability-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  let broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const profile = await writeTestProfile({ directory, mqttUrl: broker.url, mqtt: FAST_RECONNECT });
  const topic = 'endocap-test/test-box/availability';
  const observer = await observe(broker, topic);
  const availability = (): string[] => observer.on(topic).map((message) => message.text);

  let daemon = startDaemon(profile);
  t.teardown(() => daemon.kill());
  await observer.waitFor(() => availability().at(-1) === 'online', 'online', 30_000);

  await daemon.kill();
  await observer.waitFor(() => availability().at(-1) === 'offline', 'Last Will after SIGKILL');
  t.same(availability(), ['online', 'offline'], 'the broker published the Last Will');

  daemon = startDaemon(profile);
  await observer.waitFor(() => availability().at(-1) === 'online', 'online after restart', 30_000);
  await observer.close();

  // A broker restart loses every retained message; the box publishes availability again when it reconnects.
  await broker.stop();
  broker = await startMosquittoOnPort(broker.port);
  const late = await observe(broker, topic);
  t.teardown(() => late.close());
  await late.waitFor((messages) => messages.some((message) => message.text === 'online'), 'online after the broker restart', 15_000);
  t.equal(daemon.count('broker connected'), 2, 'connected once before and once after the broker restart');

  t.equal(await daemon.stop(), 0, 'daemon stops cleanly');
  await late.waitFor((messages) => messages.at(-1)?.text === 'offline', 'offline after a clean stop');
});

t.test('two boxes cloned from one profile keep stable connections', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const observer = await observe(broker, 'endocap-test/+/availability');
  t.teardown(() => observer.close());

  const machineIds = ['0123456789abcdef0123456789abcdef', 'fedcba9876543210fedcba9876543210'];
  const daemons = [];
  for (const [index, machineId] of machineIds.entries()) {
    const directory = await mkdtemp(path.join(os.tmpdir(), `endocap-clone-${index}-`));
    t.teardown(() => rm(directory, { recursive: true, force: true }));
    const machineIdFile = path.join(directory, 'machine-id');
    await writeFile(machineIdFile, `${machineId}\n`);
    // The same settings on both boxes: no box id and no client id in the profile.
    const profile = await writeTestProfile({ directory, mqttUrl: broker.url, mqtt: FAST_RECONNECT, boxId: null });
    const daemon = startDaemon(profile, { env: { ENDOCAP_MACHINE_ID_FILE: machineIdFile } });
    t.teardown(() => daemon.kill());
    daemons.push(daemon);
  }
  await observer.waitFor((messages) => messages.filter((message) => message.text === 'online').length >= 2, 'both boxes online', 30_000);
  t.same(
    observer.messages.map((message) => message.topic).sort(),
    ['endocap-test/box-0123456789ab/availability', 'endocap-test/box-fedcba987654/availability'],
    'box ids come from the machine ids',
  );

  // Boxes sharing a client id would push each other off the broker within a second.
  await new Promise((resolve) => setTimeout(resolve, 4_000));
  for (const daemon of daemons) {
    t.equal(daemon.count('broker connected'), 1, 'one connection, never dropped');
    t.equal(daemon.count('broker unreachable'), 0);
  }
  t.equal(observer.messages.filter((message) => message.text === 'offline').length, 0, 'no box went offline');
});
