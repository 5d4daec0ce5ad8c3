import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runCli, spawnCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startPtyPair } from '../helpers/socat.js';

t.test('footswitch test prints live events', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-footswitch-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'test'));
  t.teardown(() => pty.unplug());
  const file = await writeTestProfile({ directory, devicePath: pty.devicePath, gestures: { long: 'clip' }, longPressMs: 300 });

  const cli = spawnCli('footswitch', 'test', '--seconds', '20', '--profile', file);
  t.teardown(() => {
    if (cli.child.exitCode === null) cli.child.kill('SIGKILL');
  });
  await waitFor(() => cli.stdout().includes('connected to'), 10_000, 'the footswitch to connect');

  // Protocol of the test profile: 0x31 pedal down, 0x30 pedal up.
  await writeFile(pty.testPath, Buffer.from([0x31]));
  await waitFor(() => cli.stdout().includes('pedal down'), 5_000, 'pedal down');
  t.notMatch(cli.stdout(), /pedal up/, 'nothing is printed before it happens');
  await writeFile(pty.testPath, Buffer.from([0x30]));
  await waitFor(() => cli.stdout().includes('gesture short -> still'), 5_000, 'the short gesture');

  await writeFile(pty.testPath, Buffer.from([0x31]));
  await waitFor(() => cli.stdout().includes('gesture long -> clip'), 5_000, 'the long gesture');
  await writeFile(pty.testPath, Buffer.from([0x30]));
  await waitFor(() => cli.stdout().split('pedal up').length === 3, 5_000, 'the second pedal up');

  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 0, cli.stderr());
  const events = cli.stdout().split('\n').slice(1).map((line) => line.replace(/^\d\d:\d\d:\d\d\.\d{3} {2}/, '')).filter((line) => line !== '');
  t.same(events, [
    `connected to ${pty.devicePath}`,
    'pedal down',
    'pedal up',
    'gesture short -> still',
    'pedal down',
    'gesture long -> clip',
    'pedal up',
    `disconnected from ${pty.devicePath}: stopped`,
  ]);
});

t.test('footswitch test timeout and no pedal', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-footswitch-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const pty = await startPtyPair(path.join(directory, 'pedal'), path.join(directory, 'test'));
  t.teardown(() => pty.unplug());
  const timed = await runCli('footswitch', 'test', '--seconds', '0.5', '--profile', await writeTestProfile({ directory, devicePath: pty.devicePath }));
  t.equal(timed.code, 0, timed.stderr);
  t.match(timed.stdout, /connected to /);

  const none = await runCli('footswitch', 'test', '--profile', await writeTestProfile({ directory }));
  t.equal(none.code, 1);
  t.match(none.stderr, /footswitch is "none"/);
  const help = await runCli('footswitch', 'test', '--help');
  t.match(help.stdout, /--seconds N[\s\S]*Exit codes/);
  t.equal((await runCli('footswitch')).code, 64);
});
