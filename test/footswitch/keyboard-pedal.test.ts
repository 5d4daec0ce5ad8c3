/**
 * KeyboardPedal on a real terminal: one side of a socat pty pair is opened as
 * a tty.ReadStream, and the test types into the other side.
 */
import { execFile } from 'node:child_process';
import { constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { ReadStream } from 'node:tty';
import { promisify } from 'node:util';
import t from 'tap';
import type { GestureRecognized } from '../../src/footswitch/events.js';
import { KeyboardPedal, type KeyboardFootswitchConfig } from '../../src/footswitch/keyboard-pedal.js';
import { createLogger } from '../../src/log.js';
import { SocatPair, sleep, waitUntil } from './socat-pair.js';

const run = promisify(execFile);
const config: KeyboardFootswitchConfig = { kind: 'keyboard', gestures: { short: 'still', long: 'none', double: 'none' } };

const root = await mkdtemp(join(tmpdir(), 'endocap-keyboard-'));
t.teardown(() => rm(root, { recursive: true, force: true }));

/** Local modes of the terminal as `stty -a` prints them, such as "icanon" or "-icanon". */
async function canonicalMode(path: string): Promise<string> {
  const { stdout } = await run('stty', ['-F', path, '-a']);
  const mode = stdout.split(/\s+/).find((word) => word === 'icanon' || word === '-icanon');
  if (mode === undefined) throw new Error(`stty printed no icanon flag: ${stdout}`);
  return mode;
}

t.test('keyboard pedal on a terminal', async (t) => {
  const socat = new SocatPair(join(root, 'terminal'), join(root, 'keys'));
  await socat.start();
  await run('stty', ['-F', socat.devicePath, 'sane']);
  const input = new ReadStream(openSync(socat.devicePath, constants.O_RDWR | constants.O_NOCTTY));
  const pedal = new KeyboardPedal({ config, log: createLogger('silent'), input });
  t.teardown(async () => {
    await pedal.stop();
    input.destroy();
    await socat.stop();
  });
  const gestures: GestureRecognized[] = [];
  let quits = 0;
  const connected: string[] = [];
  pedal.on('gesture', (gesture) => gestures.push(gesture));
  pedal.on('quitRequested', () => {
    quits += 1;
  });
  pedal.on('connected', ({ path }) => connected.push(path));

  t.equal(await canonicalMode(socat.devicePath), 'icanon', 'starts in cooked mode');
  await pedal.start();
  t.equal(await canonicalMode(socat.devicePath), '-icanon', 'raw while running');
  t.same(connected, ['stdin']);
  t.equal(pedal.status().connected, true);

  await socat.write(' ');
  await waitUntil(() => gestures.length === 1, 2_000, 'the space made a press');
  t.equal(gestures[0]?.gesture, 'short');
  t.equal(gestures[0]?.action, 'still');

  await sleep(150);
  await socat.write('   ');
  await sleep(150);
  t.equal(gestures.length, 2, 'auto-repeated spaces are one press');

  await socat.write('c');
  await waitUntil(() => gestures.length === 3, 2_000, 'c toggled a clip');
  t.equal(gestures[2]?.action, 'clip', 'c is the clip key');
  await sleep(100);
  await socat.write('ccc');
  await sleep(150);
  t.equal(gestures.length, 3, 'a held c is one press');
  await sleep(800);
  await socat.write('C');
  await waitUntil(() => gestures.length === 4, 2_000, 'C toggled the clip again');
  t.equal(gestures[3]?.action, 'clip');

  await socat.write('xq');
  await waitUntil(() => quits === 1, 2_000, 'q asked to quit');
  await socat.write('\x03');
  await waitUntil(() => quits === 2, 2_000, 'Ctrl-C asked to quit');
  t.equal(gestures.length, 4, 'other keys are no presses');

  await pedal.stop();
  t.equal(await canonicalMode(socat.devicePath), 'icanon', 'terminal restored');
  t.equal(pedal.status().connected, false);
});

t.test('keyboard pedal without a terminal', async (t) => {
  const input = new PassThrough();
  const pedal = new KeyboardPedal({ config, log: createLogger('silent'), input });
  let gestures = 0;
  pedal.on('gesture', () => {
    gestures += 1;
  });
  await pedal.start();
  input.write(' ');
  await sleep(50);
  t.equal(gestures, 0);
  t.equal(pedal.status().connected, false);
  t.match(pedal.status().lastError, /not a terminal/);
  await pedal.stop();
});

t.test('keyboard pedal disabled leaves terminal alone', async (t) => {
  const input = Object.assign(new PassThrough(), {
    isTTY: true,
    rawCalls: 0,
    setRawMode(): void {
      input.rawCalls += 1;
    },
  });
  const pedal = new KeyboardPedal({ config, log: createLogger('silent'), input, enabled: false });
  await pedal.start();
  await pedal.stop();
  t.equal(input.rawCalls, 0);
  t.equal(pedal.status().connected, false);
});
