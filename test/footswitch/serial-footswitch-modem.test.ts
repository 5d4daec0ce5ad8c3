/**
 * SerialFootswitch with the pedal contact on a modem-status line.
 *
 * A pseudo-terminal has no modem lines (TIOCMGET fails with "Inappropriate
 * ioctl for device"), so serialport's mock binding is the only peer here. The
 * mock's get() always returns { cts: true, dsr: false, dcd: false } and has
 * no way to change them, so this test wraps its ports and replaces get() with
 * one that reads the lines from a `ModemLines` object the test drives.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPortMock } from 'serialport';
import t from 'tap';
import type { GestureRecognized, PedalChange } from '../../src/footswitch/events.js';
import { SerialFootswitch, type SerialBinding } from '../../src/footswitch/serial-footswitch.js';
import { createLogger } from '../../src/log.js';
import { footswitchSchema, type SerialFootswitchConfig } from '../../src/profile/schema.js';
import { sleep, waitUntil } from './socat-pair.js';

const mockBinding = SerialPortMock.binding;

class ModemLines {
  cts = false;
  dsr = false;
  dcd = false;
  /** How long each get() takes. */
  readDelayMs = 0;
  reads = 0;
  inFlight = 0;
  maxInFlight = 0;
}

function modemBinding(lines: ModemLines): SerialBinding {
  return {
    list: () => mockBinding.list(),
    async open(options) {
      const port = await mockBinding.open(options);
      port.get = async () => {
        lines.inFlight += 1;
        lines.maxInFlight = Math.max(lines.maxInFlight, lines.inFlight);
        try {
          if (lines.readDelayMs > 0) await sleep(lines.readDelayMs);
          if (!port.isOpen) throw new Error('Port is not open');
          lines.reads += 1;
          return { cts: lines.cts, dsr: lines.dsr, dcd: lines.dcd };
        } finally {
          lines.inFlight -= 1;
        }
      };
      return port;
    },
  };
}

const root = await mkdtemp(join(tmpdir(), 'endocap-modem-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
let caseNumber = 0;

interface Rig {
  lines: ModemLines;
  pedal: SerialFootswitch;
  gestures: GestureRecognized[];
  changes: PedalChange[];
}

/**
 * Creates a mock port and a footswitch on it, not started. The port's path
 * exists on disk because the footswitch checks that its path still exists.
 */
async function makeRig(t: { teardown: (fn: () => Promise<void>) => void }, protocol: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Rig> {
  caseNumber += 1;
  const path = join(root, `ttyMOCK${caseNumber}`);
  await writeFile(path, '');
  mockBinding.createPort(path);
  const parsed = footswitchSchema.parse({ kind: 'serial', path, protocol: { kind: 'modem', line: 'dsr', pollIntervalMs: 1, ...protocol }, reopenIntervalMs: 200, ...extra });
  if (parsed.kind !== 'serial') throw new Error('expected a serial footswitch config');
  const config: SerialFootswitchConfig = parsed;
  const lines = new ModemLines();
  const pedal = new SerialFootswitch({ config, log: createLogger('silent'), binding: modemBinding(lines) });
  const gestures: GestureRecognized[] = [];
  const changes: PedalChange[] = [];
  pedal.on('gesture', (gesture) => gestures.push(gesture));
  pedal.on('pedalChanged', (change) => changes.push(change));
  t.teardown(async () => {
    await pedal.stop();
    mockBinding.reset();
  });
  return { lines, pedal, gestures, changes };
}

async function startAndPoll(rig: Rig): Promise<void> {
  await rig.pedal.start();
  await waitUntil(() => rig.pedal.status().connected, 2_000, 'the mock port is open');
  const reads = rig.lines.reads;
  await waitUntil(() => rig.lines.reads > reads + 2, 2_000, 'the lines are being polled');
}

/** Flips `dsr` every 5 ms for 15 ms, then leaves it at `level`. */
async function bounceDsr(lines: ModemLines, level: boolean): Promise<void> {
  for (const value of [level, !level, level, !level]) {
    lines.dsr = value;
    await sleep(5);
  }
  lines.dsr = level;
}

t.test('modem dsr bounce is one press', async (t) => {
  const rig = await makeRig(t, {});
  await startAndPoll(rig);

  await bounceDsr(rig.lines, true);
  await sleep(200);
  await bounceDsr(rig.lines, false);
  await sleep(200);

  t.equal(rig.gestures.length, 1);
  t.equal(rig.gestures[0]?.gesture, 'short');
  t.equal(rig.gestures[0]?.action, 'still');
  t.same(rig.changes.map((change) => change.down), [true, false]);
  t.comment(`raw edges seen: ${rig.pedal.status().counters.rawEdges}`);
});

t.test('modem long press fires while held', async (t) => {
  const rig = await makeRig(t, {}, { gestures: { short: 'none', long: 'still' }, longPressMs: 500 });
  await startAndPoll(rig);

  rig.lines.dsr = true;
  await waitUntil(() => rig.gestures.length === 1, 2_000, 'the long press fired');
  t.equal(rig.gestures[0]?.gesture, 'long');
  t.equal(rig.gestures[0]?.action, 'still');
  t.same(rig.changes.map((change) => change.down), [true], 'fired before the release');
  rig.lines.dsr = false;
  await sleep(150);
  t.equal(rig.gestures.length, 1, 'release adds nothing');
});

t.test('modem activeLow inverts the line', async (t) => {
  const rig = await makeRig(t, { line: 'cts', activeLow: true });
  rig.lines.cts = true;
  await startAndPoll(rig);
  await sleep(100);
  t.equal(rig.gestures.length, 0, 'a set line is the idle state');

  rig.lines.cts = false;
  await sleep(100);
  rig.lines.cts = true;
  await sleep(100);
  t.equal(rig.gestures.length, 1);
  t.same(rig.changes.map((change) => change.down), [true, false]);
});

t.test('modem polls do not overlap', async (t) => {
  const rig = await makeRig(t, {});
  rig.lines.readDelayMs = 20;
  await startAndPoll(rig);
  await sleep(300);

  t.equal(rig.lines.maxInFlight, 1);
  t.ok(rig.pedal.status().counters.skippedPolls > 0, 'ticks during a slow read were skipped');
  rig.lines.dsr = true;
  await sleep(150);
  rig.lines.dsr = false;
  await sleep(150);
  t.equal(rig.gestures.length, 1, 'slow reads still see a press');
});

t.test('modem pedal held at connect fires nothing', async (t) => {
  const rig = await makeRig(t, {});
  rig.lines.dsr = true;
  await startAndPoll(rig);
  await sleep(150);
  t.equal(rig.gestures.length, 0);
  t.same(rig.changes, []);

  rig.lines.dsr = false;
  await sleep(100);
  rig.lines.dsr = true;
  await sleep(100);
  rig.lines.dsr = false;
  await sleep(100);
  t.equal(rig.gestures.length, 1, 'the next real press counts');
});
