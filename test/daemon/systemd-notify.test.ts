import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { watchdogIntervalMs } from '../../src/daemon/systemd.js';
import { Spool } from '../../src/spool/spool.js';
import type { SpoolEntry } from '../../src/spool/types.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { startMosquitto } from '../helpers/mosquitto.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { UID_ROOT, makeObject, plain } from '../spool/fixtures/objects.js';

// Node cannot bind AF_UNIX SOCK_DGRAM sockets, so a Python helper plays systemd's notify socket.
// recv() without ancillary buffer closes the file descriptor of BARRIER=1, which releases systemd-notify.
const NOTIFY_SOCKET_SCRIPT = `
import json, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
print(json.dumps("LISTENING"), flush=True)
while True:
    print(json.dumps(sock.recv(65536).decode()), flush=True)
`;

interface Notification {
  at: number;
  /** The datagram's assignments, such as READY=1 and MAINPID=1234. */
  fields: string[];
}

function startNotifySocket(socketPath: string): { notifications: Notification[]; stop(): Promise<void> } {
  const child = spawn('/usr/bin/python3', ['-c', NOTIFY_SOCKET_SCRIPT, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const notifications: Notification[] = [];
  let pending = '';
  child.stdout.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) notifications.push({ at: Date.now(), fields: String(JSON.parse(line)).split('\n').filter(Boolean) });
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    notifications,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

t.test('daemon notifies systemd of ready, watchdog and stopping', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-notify-'));
  const broker = await startMosquitto();
  const socketPath = path.join(directory, 'notify.sock');
  const notifySocket = startNotifySocket(socketPath);
  t.teardown(async () => {
    await notifySocket.stop();
    await broker.stop();
    await rm(directory, { recursive: true, force: true });
  });
  await waitFor(() => notifySocket.notifications.some((n) => n.fields.includes('LISTENING')), 10_000, 'the notify socket to be bound');
  const has = (field: string): Notification[] => notifySocket.notifications.filter((n) => n.fields.includes(field));

  const availability: string[] = [];
  const observer = await mqtt.connectAsync(broker.url);
  await observer.subscribeAsync('endocap-test/+/availability');
  observer.on('message', (_topic, payload) => availability.push(payload.toString()));
  t.teardown(() => observer.endAsync());

  // Two objects wait for a destination on a loopback port where nothing listens, so they stay queued.
  const spoolDirectory = path.join(directory, 'spool');
  const seeded = new Spool({ directory: spoolDirectory, destinations: plain('pacs'), log: createLogger('silent') });
  await seeded.open();
  const waiting: SpoolEntry[] = [];
  for (let i = 1; i <= 2; i += 1) {
    const { part10, meta } = makeObject(`${UID_ROOT}.81.${i}`);
    waiting.push(await seeded.add(part10, meta));
  }
  await seeded.close();

  const profile = await writeTestProfile({
    directory,
    destinations: [{ name: 'pacs', host: '127.0.0.1', port: await freePort(), calledAeTitle: 'STORESCP' }],
    mqttUrl: broker.url,
  });
  const daemon = startDaemon(profile, { env: { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '2000000' } });
  t.teardown(() => daemon.kill());

  await waitFor(() => has('READY=1').length > 0, 30_000, 'READY=1');
  t.equal(daemon.count('spool opened'), 1, 'the spool was opened before READY=1');
  t.equal(has('READY=1').length, 1, 'READY=1 is sent once');
  t.same(has('READY=1')[0]?.fields.filter((f) => f.startsWith('MAINPID=')), [`MAINPID=${daemon.child.pid}`], 'READY=1 names the daemon as main process');
  t.equal(has('WATCHDOG=1').length, 0, 'no keep-alive before READY=1');

  // WATCHDOG_USEC of 2 s means a keep-alive every second.
  await waitFor(() => has('WATCHDOG=1').length >= 4, 15_000, 'four WATCHDOG=1 keep-alives');
  const keepAlives = has('WATCHDOG=1').map((n) => n.at);
  for (let i = 1; i < keepAlives.length; i += 1) {
    const gap = (keepAlives[i] ?? 0) - (keepAlives[i - 1] ?? 0);
    t.ok(gap < 2_000, `keep-alive ${i} came ${gap} ms after the previous one, within the 2 s watchdog`);
  }
  t.equal(has('STOPPING=1').length, 0, 'no STOPPING=1 while running');
  await waitFor(() => availability.includes('online'), 10_000, 'online on the availability topic');

  const stoppingAt = Date.now();
  const exitCode = await daemon.stop();
  t.equal(exitCode, 0, 'SIGTERM gives a clean exit');
  t.ok(Date.now() - stoppingAt < 5_000, 'the daemon exits within 5 s of SIGTERM');
  await waitFor(() => has('STOPPING=1').length > 0, 5_000, 'STOPPING=1');
  t.equal(has('STOPPING=1').length, 1, 'STOPPING=1 is sent once');
  await waitFor(() => availability.at(-1) === 'offline', 5_000, 'offline on the availability topic');
  t.equal(availability.at(-1), 'offline', 'offline is published on stop');

  const objectFiles = (await readdir(path.join(spoolDirectory, 'objects'))).filter((name) => name.endsWith('.dcm')).sort();
  t.same(objectFiles, waiting.map((entry) => `${entry.id}.dcm`).sort(), 'the queued objects are still in the spool');
  for (const [index, entry] of waiting.entries()) {
    t.ok((await readFile(path.join(spoolDirectory, 'objects', `${entry.id}.dcm`))).equals(makeObject(`${UID_ROOT}.81.${index + 1}`).part10), `${entry.id} unchanged`);
  }
});

t.test('daemon sends no keep-alives without WATCHDOG_USEC', async (t) => {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-notify-'));
  const socketPath = path.join(directory, 'notify.sock');
  const notifySocket = startNotifySocket(socketPath);
  t.teardown(async () => {
    await notifySocket.stop();
    await rm(directory, { recursive: true, force: true });
  });
  await waitFor(() => notifySocket.notifications.some((n) => n.fields.includes('LISTENING')), 10_000, 'the notify socket to be bound');

  const profile = await writeTestProfile({ directory });
  const daemon = startDaemon(profile, { env: { NOTIFY_SOCKET: socketPath } });
  t.teardown(() => daemon.kill());
  await waitFor(() => notifySocket.notifications.some((n) => n.fields.includes('READY=1')), 30_000, 'READY=1');
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  t.equal(notifySocket.notifications.filter((n) => n.fields.includes('WATCHDOG=1')).length, 0, 'no WATCHDOG=1 is sent');
  t.equal(await daemon.stop(), 0, 'SIGTERM gives a clean exit');
});

t.test('watchdog interval follows WATCHDOG_USEC', async (t) => {
  const socket = { NOTIFY_SOCKET: '/run/systemd/notify' };
  t.equal(watchdogIntervalMs({ ...socket, WATCHDOG_USEC: '30000000' }), 15_000, 'half of 30 s');
  t.equal(watchdogIntervalMs({ ...socket, WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid) }), 15_000, 'WATCHDOG_PID of this process');
  t.equal(watchdogIntervalMs({ ...socket, WATCHDOG_USEC: '30000000', WATCHDOG_PID: String(process.pid + 1) }), undefined, 'WATCHDOG_PID of another process');
  t.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }), undefined, 'no NOTIFY_SOCKET');
  t.equal(watchdogIntervalMs(socket), undefined, 'no WATCHDOG_USEC');
  t.equal(watchdogIntervalMs({ ...socket, WATCHDOG_USEC: 'soon' }), undefined, 'invalid WATCHDOG_USEC');
  t.equal(watchdogIntervalMs({ ...socket, WATCHDOG_USEC: '0' }), undefined, 'zero WATCHDOG_USEC');
});
