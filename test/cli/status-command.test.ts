import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { DaemonStatus } from '../../src/daemon/control-server.js';
import { formatStatus } from '../../src/cli/status-command.js';
import { runCli } from '../helpers/cli.js';
import { startDaemon } from '../helpers/daemon-process.js';
import { freePort } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';

t.test('status with and without a daemon', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-status-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const closedPort = await freePort();
  const file = await writeTestProfile({ directory, destinations: [{ name: 'pacs', host: '127.0.0.1', port: closedPort, calledAeTitle: 'STORESCP' }] });

  const daemon = startDaemon(file);
  t.teardown(() => daemon.kill());
  await daemon.waitForLog('control socket listening');
  await daemon.waitForLog('video signal acquired');

  const text = await runCli('status', '--profile', file);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /^endocap .*, box test-box, pid \d+, running since /);
  t.match(text.stdout, /video: +signal 640x480 at [\d.]+ fps/);
  t.match(text.stdout, /footswitch: none configured/);
  t.match(text.stdout, /spool: +0 objects/);
  t.match(text.stdout, /destination pacs: 0 queued/);

  const json = await runCli('status', '--json', '--profile', file);
  t.equal(json.code, 0, json.stderr);
  const status = JSON.parse(json.stdout) as DaemonStatus;
  t.equal(status.boxId, 'test-box');
  t.equal(status.pid, daemon.child.pid);
  t.equal(status.footswitch.kind, 'none');

  t.equal(await daemon.stop(), 0);
  const none = await runCli('status', '--profile', file);
  t.equal(none.code, 1);
  t.match(none.stderr, /no daemon is running/);
  t.equal(none.stdout, '');
});

t.test('status help and bad arguments', async (t) => {
  const help = await runCli('status', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /--json/);
  t.match(help.stdout, /Exit codes: 0 success, 1 runtime failure, 64 usage error, 78 invalid profile/);
  t.equal((await runCli('status', 'extra')).code, 64);
  const unknown = await runCli('status', '--bogus');
  t.equal(unknown.code, 64);
  t.equal(unknown.stderr.split('\n')[0], 'endocap status: unknown option "--bogus"');
});

t.test('status labels an earlier sender error', async (t) => {
  const status: DaemonStatus = {
    version: '0.1.0',
    boxId: 'test-box',
    pid: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
    video: { signal: true, width: 640, height: 480, fps: 30 },
    footswitch: { kind: 'none', connected: false },
    spool: { objects: 1, bytes: 1024, retained: 1, retainedBytes: 1024, alarms: [], destinations: { pacs: { queued: 0, sending: 0, setAside: 0, awaitingCommitment: 0, bytesQueued: 0, oldestQueuedAt: null } } },
    senders: [{ destination: 'pacs', lastResult: 'stored', consecutiveFailures: 0, lastError: 'connection refused by 127.0.0.1:104' }],
  };
  const line = formatStatus(status).split('\n').find((text) => text.startsWith('destination pacs:'));
  t.equal(line, 'destination pacs: 0 queued, 0 set aside, 0 awaiting commitment; last result stored; last error: connection refused by 127.0.0.1:104');
});
