/**
 * SerialFootswitch over real pseudo-terminals made by socat: byte and line
 * protocols, garbage, floods, unplug and replug, and a port held by another
 * process. Modem-line wiring is in serial-footswitch-modem.test.ts because a
 * pty has no modem lines.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { SerialPort } from 'serialport';
import t from 'tap';
import type { GestureRecognized, PedalChange } from '../../src/footswitch/events.js';
import { MIN_GESTURE_INTERVAL_MS } from '../../src/footswitch/gestures.js';
import { SerialFootswitch } from '../../src/footswitch/serial-footswitch.js';
import { createLogger } from '../../src/log.js';
import { footswitchSchema, type SerialFootswitchConfig } from '../../src/profile/schema.js';
import { SocatPair, sleep, waitUntil } from './socat-pair.js';

const DOWN = 'D';
const UP = 'U';
const REOPEN_MS = 200;

const root = await mkdtemp(join(tmpdir(), 'endocap-footswitch-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
let caseNumber = 0;

interface Rig {
  socat: SocatPair;
  pedal: SerialFootswitch;
  gestures: GestureRecognized[];
  changes: PedalChange[];
  logLines: Array<{ msg?: string; level?: string }>;
  press: () => Promise<void>;
}

function serialConfig(devicePath: string, extra: Record<string, unknown> = {}): SerialFootswitchConfig {
  const config = footswitchSchema.parse({
    kind: 'serial',
    path: devicePath,
    protocol: { kind: 'bytes', down: [DOWN.charCodeAt(0)], up: [UP.charCodeAt(0)] },
    reopenIntervalMs: REOPEN_MS,
    ...extra,
  });
  if (config.kind !== 'serial') throw new Error('expected a serial footswitch config');
  return config;
}

/** Creates a socat pair and a footswitch on it, both stopped in teardown. Starts neither. */
function makeRig(t: { teardown: (fn: () => Promise<void>) => void }, extra: Record<string, unknown> = {}): Rig {
  caseNumber += 1;
  const socat = new SocatPair(join(root, `device-${caseNumber}`), join(root, `pedal-${caseNumber}`));
  const logLines: Rig['logLines'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logLines.push(JSON.parse(line) as Rig['logLines'][number]);
      callback();
    },
  });
  const pedal = new SerialFootswitch({ config: serialConfig(socat.devicePath, extra), log: createLogger('debug', sink) });
  const gestures: GestureRecognized[] = [];
  const changes: PedalChange[] = [];
  pedal.on('gesture', (gesture) => gestures.push(gesture));
  pedal.on('pedalChanged', (change) => changes.push(change));
  t.teardown(async () => {
    await pedal.stop();
    await socat.stop();
  });
  const press = async (): Promise<void> => {
    await socat.write(DOWN);
    await sleep(80);
    await socat.write(UP);
    await sleep(80);
  };
  return { socat, pedal, gestures, changes, logLines, press };
}

async function startConnected(rig: Rig): Promise<void> {
  await rig.socat.start();
  await rig.pedal.start();
  await waitUntil(() => rig.pedal.status().connected, 5_000, 'the footswitch is connected');
}

/** Milliseconds until `event` fires once on the footswitch. */
function timeUntil(pedal: SerialFootswitch, event: 'connected' | 'disconnected'): Promise<number> {
  const started = performance.now();
  return new Promise((resolve) => pedal.once(event, () => resolve(performance.now() - started)));
}

t.test('byte presses over pty', async (t) => {
  const rig = makeRig(t);
  const connected = timeUntil(rig.pedal, 'connected');
  await startConnected(rig);
  await connected;

  const before = Date.now();
  for (let press = 0; press < 3; press += 1) await rig.press();
  await waitUntil(() => rig.gestures.length >= 3, 10_000, 'three gestures arrived');
  await sleep(100);

  t.equal(rig.gestures.length, 3);
  t.same(
    rig.gestures.map((gesture) => `${gesture.gesture}:${gesture.action}`),
    ['short:still', 'short:still', 'short:still'],
  );
  t.ok((rig.gestures[0]?.pressedAt ?? 0) >= before, 'pressedAt is on the Date.now clock');
  t.same(rig.changes.map((change) => change.down), [true, false, true, false, true, false]);
  const status = rig.pedal.status();
  t.equal(status.connected, true);
  t.equal(status.path, rig.socat.devicePath);
  t.match(status.resolvedPath, /^\/dev\/pts\/\d+$/);
  t.equal(status.lastError, undefined);
});

t.test('line protocol with split lines', async (t) => {
  const rig = makeRig(t, { protocol: { kind: 'lines', down: ['PEDAL DOWN'], up: ['PEDAL UP'], maxLineLength: 64 } });
  await startConnected(rig);

  for (const piece of ['PED', 'AL DO', 'WN\r', '\n']) {
    await rig.socat.write(piece);
    await sleep(20);
  }
  await waitUntil(() => rig.gestures.length === 1, 10_000, 'the split down line made a press');
  // Each line is written once the one before it changed the level. Lines that arrive together
  // on a busy machine would make changes shorter than the debounce, which it drops.
  await rig.socat.write('  PEDAL UP  \r');
  await waitUntil(() => rig.changes.length === 2, 10_000, 'the release ended by CR arrived');
  await rig.socat.write('PEDAL DOWN\n');
  await waitUntil(() => rig.changes.length === 3, 10_000, 'the press ended by LF arrived');
  await rig.socat.write('PEDAL UP\r\n');
  await waitUntil(() => rig.changes.length === 4, 10_000, 'the release ended by CRLF arrived');
  t.same(rig.changes.map((change) => change.down), [true, false, true, false]);
  t.ok(rig.gestures.length >= 2, `${rig.gestures.length} gestures for two presses`);

  // 50 overlong lines, then binary garbage: dropped with one rate-limited warning.
  for (let line = 0; line < 50; line += 1) await rig.socat.write(`${'x'.repeat(1_000)}\n`);
  await rig.socat.write(randomBytes(65_536).map((byte) => (byte === 0x0a || byte === 0x0d ? 0x20 : byte)));
  await rig.socat.write('\n');
  await waitUntil(() => rig.pedal.status().counters.overlongLines >= 51, 5_000, 'the overlong lines were counted');
  t.equal(rig.pedal.status().counters.overlongLines, 51);
  const warnings = rig.logLines.filter((line) => line.msg === 'footswitch dropped unknown or overlong lines');
  t.equal(warnings.length, 1, 'repeats are rate limited');

  await rig.socat.write('PEDAL DOWN\r\n');
  await sleep(100);
  await rig.socat.write('PEDAL UP\r\n');
  await waitUntil(() => rig.gestures.length === 3, 10_000, 'a press after the garbage arrived');
  t.equal(rig.gestures.length, 3);
});

t.test('random garbage causes no action', async (t) => {
  const rig = makeRig(t);
  await startConnected(rig);

  const size = 1024 * 1024;
  const garbage = randomBytes(size).map((byte) => (byte === DOWN.charCodeAt(0) || byte === UP.charCodeAt(0) ? 0 : byte));
  await rig.socat.write(garbage);
  await waitUntil(() => rig.pedal.status().counters.ignoredBytes >= size, 20_000, 'every garbage byte was read');

  t.equal(rig.pedal.status().counters.ignoredBytes, size);
  t.equal(rig.gestures.length, 0);
  t.equal(rig.changes.length, 0);
  const debugLines = rig.logLines.filter((line) => line.msg === 'footswitch ignored bytes not in the protocol map');
  t.ok(debugLines.length >= 1 && debugLines.length <= 3, `ignored bytes logged ${debugLines.length} times`);

  await rig.press();
  await waitUntil(() => rig.gestures.length === 1, 10_000, 'a press after the garbage arrived');
  t.equal(rig.pedal.status().connected, true);
});

/** Writes 10,000 down-up pairs over one second, in 10 ms bursts, and returns how long it took. */
async function flood(rig: Rig): Promise<number> {
  const burst = Buffer.from(`${DOWN}${UP}`.repeat(100), 'latin1');
  const started = performance.now();
  for (let round = 0; round < 100; round += 1) {
    await rig.socat.write(burst);
    await sleep(10);
  }
  return performance.now() - started;
}

t.test('flood of 10000 presses per second', async (t) => {
  const rig = makeRig(t);
  await startConnected(rig);

  const elapsedMs = await flood(rig);
  await sleep(300);
  const { counters } = rig.pedal.status();
  t.comment(`flood: ${counters.rawEdges} raw edges in ${Math.round(elapsedMs)} ms, ${rig.gestures.length} gestures, ${counters.bouncesRejected} rejected`);
  t.equal(counters.rawEdges, 20_000, 'every byte was decoded');
  const limit = Math.ceil(elapsedMs / MIN_GESTURE_INTERVAL_MS) + 1;
  t.ok(rig.gestures.length <= limit, `${rig.gestures.length} gestures, limit ${limit}`);
  t.equal(rig.pedal.status().connected, true);

  const before = rig.gestures.length;
  await rig.press();
  await waitUntil(() => rig.gestures.length === before + 1, 10_000, 'a press after the flood arrived');
});

t.test('flood without debounce is rate limited', async (t) => {
  const rig = makeRig(t, { debounceMs: 0 });
  await startConnected(rig);

  const elapsedMs = await flood(rig);
  await sleep(300);
  const { counters } = rig.pedal.status();
  t.comment(`flood without debounce: ${rig.gestures.length} gestures, ${counters.gesturesSuppressed} suppressed in ${Math.round(elapsedMs)} ms`);
  const limit = Math.ceil((elapsedMs + 300) / MIN_GESTURE_INTERVAL_MS) + 1;
  t.ok(rig.gestures.length <= limit, `${rig.gestures.length} gestures, limit ${limit}`);
  t.ok(rig.gestures.length >= 1, 'some presses pass');
  t.equal(counters.gesturesEmitted + counters.gesturesSuppressed, 10_000);
});

t.test('unplug while idle and replug', async (t) => {
  const rig = makeRig(t);
  await startConnected(rig);
  const disconnects: Array<{ path: string; reason: string }> = [];
  rig.pedal.on('disconnected', (event) => disconnects.push(event));

  const disconnected = timeUntil(rig.pedal, 'disconnected');
  await rig.socat.stop();
  const detectMs = await disconnected;
  t.ok(detectMs < 2_000, `disconnect noticed after ${Math.round(detectMs)} ms`);
  t.equal(disconnects.length, 1);
  t.equal(disconnects[0]?.path, rig.socat.devicePath);
  t.equal(rig.pedal.status().connected, false);
  t.equal(rig.pedal.status().lastErrorCode, 'SERIAL_DISCONNECTED');

  await sleep(3 * REOPEN_MS);
  t.match(rig.pedal.status().lastError, /^SERIAL_OPEN_FAILED: /, 'keeps retrying while the device is away');

  const connected = timeUntil(rig.pedal, 'connected');
  await rig.socat.start();
  await connected;
  t.equal(rig.pedal.status().connected, true);
  t.equal(rig.pedal.status().lastError, undefined);
  await rig.press();
  await waitUntil(() => rig.gestures.length === 1, 10_000, 'a press after the replug arrived');
  t.equal(rig.gestures.length, 1);
  t.equal(rig.pedal.status().counters.disconnects, 1);
});

t.test('device path removed while port open', async (t) => {
  const rig = makeRig(t);
  await startConnected(rig);

  // The pty stays open, so only the periodic check of the path can notice this.
  const movedPath = `${rig.socat.devicePath}.moved`;
  const disconnected = timeUntil(rig.pedal, 'disconnected');
  await rename(rig.socat.devicePath, movedPath);
  const detectMs = await disconnected;
  t.ok(detectMs < 2_000, `removal noticed after ${Math.round(detectMs)} ms`);
  t.match(rig.pedal.status().lastError, /^SERIAL_DISCONNECTED: .*device path is gone/);

  const connected = timeUntil(rig.pedal, 'connected');
  await rename(movedPath, rig.socat.devicePath);
  await connected;
  await rig.press();
  await waitUntil(() => rig.gestures.length === 1, 10_000, 'a press after the path returned');
  t.equal(rig.gestures.length, 1);
});

t.test('unplug while held releases without action', async (t) => {
  const rig = makeRig(t, { gestures: { short: 'still', long: 'still' }, longPressMs: 1_000 });
  await startConnected(rig);

  await rig.socat.write(DOWN);
  await waitUntil(() => rig.changes.length === 1, 10_000, 'the pedal is down');
  t.equal(rig.changes[0]?.down, true);

  const disconnected = timeUntil(rig.pedal, 'disconnected');
  await rig.socat.stop();
  const detectMs = await disconnected;
  t.ok(detectMs < 2_000, `disconnect noticed after ${Math.round(detectMs)} ms`);
  t.same(rig.changes.map((change) => change.down), [true, false], 'the held pedal is released');
  await sleep(1_100);
  t.equal(rig.gestures.length, 0, 'neither long nor short fired');

  await rig.socat.start();
  await waitUntil(() => rig.pedal.status().connected, 5_000, 'the footswitch reconnected');
  await rig.press();
  await waitUntil(() => rig.gestures.length === 1, 10_000, 'a press after the replug arrived');
  t.equal(rig.gestures[0]?.gesture, 'short');
});

t.test('busy port reported then works', async (t) => {
  const rig = makeRig(t);
  await rig.socat.start();
  const holder = new SerialPort({ path: rig.socat.devicePath, baudRate: 9600, lock: true, autoOpen: false });
  await new Promise<void>((resolve, reject) => holder.open((error) => (error ? reject(error) : resolve())));
  t.teardown(() => new Promise<void>((resolve) => (holder.isOpen ? holder.close(() => resolve()) : resolve())));

  await rig.pedal.start();
  let status = rig.pedal.status();
  t.equal(status.connected, false);
  t.equal(status.lastErrorCode, 'SERIAL_PORT_BUSY');
  t.match(status.lastError, /^SERIAL_PORT_BUSY: cannot open serial port .*: .*lock/);

  await sleep(3 * REOPEN_MS);
  status = rig.pedal.status();
  t.equal(status.lastErrorCode, 'SERIAL_PORT_BUSY', 'still busy while held');
  t.ok(status.counters.openFailures >= 2, 'retried');

  const connected = timeUntil(rig.pedal, 'connected');
  await new Promise<void>((resolve) => holder.close(() => resolve()));
  await connected;
  await rig.press();
  await waitUntil(() => rig.gestures.length === 1, 10_000, 'a press after the release arrived');
  t.equal(rig.pedal.status().lastError, undefined);
});

t.test('missing port at start then appears', async (t) => {
  const rig = makeRig(t);
  await rig.pedal.start();
  t.equal(rig.pedal.status().connected, false);
  t.equal(rig.pedal.status().lastErrorCode, 'SERIAL_OPEN_FAILED');

  await rig.socat.start();
  await waitUntil(() => rig.pedal.status().connected, 5_000, 'the footswitch found the port');
  await rig.press();
  await waitUntil(() => rig.gestures.length === 1, 10_000, 'a press arrived');
  t.equal(rig.gestures.length, 1);
});

t.test('stop closes the port', async (t) => {
  const rig = makeRig(t);
  await startConnected(rig);
  const reasons: string[] = [];
  rig.pedal.on('disconnected', ({ reason }) => reasons.push(reason));

  await rig.pedal.stop();
  t.same(reasons, ['stopped']);
  t.equal(rig.pedal.status().connected, false);
  const other = new SerialPort({ path: rig.socat.devicePath, baudRate: 9600, lock: true, autoOpen: false });
  const error = await new Promise<Error | null>((resolve) => other.open((openError) => resolve(openError)));
  t.equal(error, null, 'the lock was released');
  await new Promise<void>((resolve) => other.close(() => resolve()));

  await sleep(3 * REOPEN_MS);
  t.equal(rig.pedal.status().counters.connects, 1, 'no reopen after stop');
});
