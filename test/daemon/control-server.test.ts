import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ControlClient } from '../../src/cli/control-client.js';
import { ControlServer, type DaemonStatus } from '../../src/daemon/control-server.js';
import { createLogger } from '../../src/log.js';
import { Spool } from '../../src/spool/spool.js';
import { UID_ROOT, makeObject, plain } from '../spool/fixtures/objects.js';

const fakeStatus: DaemonStatus = {
  version: '0.0.0-test',
  boxId: 'test-box',
  pid: process.pid,
  startedAt: '2026-12-14T08:00:00.000Z',
  video: { signal: true, width: 640, height: 480, fps: 30 },
  footswitch: { kind: 'none', connected: false },
  spool: { objects: 0, bytes: 0, retained: 0, retainedBytes: 0, alarms: [], destinations: {} },
  senders: [],
};

async function startServer(t: { teardown: (fn: () => Promise<void>) => void }): Promise<{ directory: string; socketPath: string; spool: Spool; server: ControlServer; woken: () => number }> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-control-'));
  const spool = new Spool({ directory: path.join(directory, 'spool'), destinations: plain('pacs'), log: createLogger('silent') });
  await spool.open();
  let wakes = 0;
  const socketPath = path.join(directory, 'control.sock');
  const server = new ControlServer({ socketPath, spool, status: () => fakeStatus, objectsQueued: () => (wakes += 1), log: createLogger('silent') });
  await server.start();
  t.teardown(async () => {
    await server.stop();
    await spool.close();
    await rm(directory, { recursive: true, force: true });
  });
  return { directory, socketPath, spool, server, woken: () => wakes };
}

/** Sends raw lines and collects one response line per request. */
async function exchange(socketPath: string, lines: string[]): Promise<Array<{ ok: boolean; result?: unknown; error?: { code: string; message: string } }>> {
  const socket = net.connect(socketPath);
  const responses: string[] = [];
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (data) => {
      buffered += data.toString('utf8');
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      responses.push(...parts);
      if (responses.length >= lines.length) resolve();
    });
    socket.write(lines.map((line) => `${line}\n`).join(''));
  });
  socket.destroy();
  return responses.map((line) => JSON.parse(line) as { ok: boolean; result?: unknown; error?: { code: string; message: string } });
}

t.test('control socket serves status and queue requests', async (t) => {
  const { socketPath, spool, woken } = await startServer(t);
  t.equal((await stat(socketPath)).mode & 0o777, 0o660, 'socket mode 0660');

  const { part10, meta } = makeObject(`${UID_ROOT}.60.1`);
  const entry = await spool.add(part10, meta);
  await spool.markSetAside(entry.id, 'pacs', 'rejected', 0xc000);

  const client = await ControlClient.connect(socketPath);
  if (client === undefined) throw new Error('no daemon listening');
  t.teardown(() => client.close());
  t.same(await client.request({ command: 'status' }), fakeStatus);

  const listed = await client.request({ command: 'queue-list', state: 'set-aside' });
  t.same(listed.objects.map((item) => [item.id, item.sopClassName, item.deliveries.pacs?.lastStatus]), [[entry.id, 'VL Endoscopic Image Storage', 0xc000]]);
  t.notOk(JSON.stringify(listed).includes(meta.sopInstanceUid), 'no SOP Instance UID in the list');

  const retried = await client.request({ command: 'queue-retry', ids: [entry.id] });
  t.same(retried.requeued, [{ id: entry.id, destination: 'pacs', previousState: 'set-aside' }]);
  t.equal(woken(), 1, 'senders woken after a retry');

  const exported = await client.request({ command: 'queue-export', id: entry.id });
  t.ok(Buffer.from(exported.part10, 'base64').equals(part10), 'export returns the Part 10 bytes');
  t.equal(exported.entry.sopInstanceUid, meta.sopInstanceUid);

  const other = makeObject(`${UID_ROOT}.60.2`);
  const imported = await client.request({ command: 'queue-import', part10: other.part10.toString('base64') });
  t.equal(imported.outcome, 'imported');
  t.equal(woken(), 2, 'senders woken after an import');
  const again = await client.request({ command: 'queue-import', part10: other.part10.toString('base64') });
  t.same(again, { outcome: 'duplicate', id: imported.id });
  t.equal(spool.list().length, 2);
});

t.test('control socket reports bad requests', async (t) => {
  const { socketPath } = await startServer(t);
  const responses = await exchange(socketPath, [
    'not json',
    '{"command":"reboot"}',
    '{"command":"queue-retry"}',
    '{"command":"queue-export","id":"20990101T000000.000Z-000000"}',
    `{"command":"queue-import","part10":"${Buffer.from('plain text').toString('base64')}"}`,
    '{"command":"queue-list","state":"lost"}',
    '{"command":"status"}',
  ]);
  t.same(
    responses.map((response) => response.error?.code ?? 'ok'),
    ['CONTROL_REQUEST_FAILED', 'CONTROL_REQUEST_FAILED', 'CONTROL_REQUEST_FAILED', 'SPOOL_UNKNOWN_OBJECT', 'DICOM_OBJECT_INVALID', 'CONTROL_REQUEST_FAILED', 'ok'],
    'each request gets its own answer, in order',
  );
  t.match(responses[0]?.error?.message, /invalid control request/);
  t.match(responses[2]?.error?.message, /needs "ids" or "allSetAside"/);
  t.match(responses[4]?.error?.message, /invalid DICOM Part 10 file/);
});

t.test('control socket replaces a stale socket file', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-control-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const socketPath = path.join(directory, 'control.sock');
  // A socket file nothing listens on, as a daemon killed with SIGKILL leaves it.
  const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  await once(child, 'exit');
  t.ok((await stat(socketPath)).isSocket(), 'the killed process left its socket file');

  const spool = new Spool({ directory: path.join(directory, 'spool'), destinations: plain('pacs'), log: createLogger('silent') });
  await spool.open();
  const server = new ControlServer({ socketPath, spool, status: () => fakeStatus, objectsQueued: () => undefined, log: createLogger('silent') });
  await server.start();
  const client = await ControlClient.connect(socketPath);
  t.ok(client, 'a daemon listens again');
  client?.close();

  const second = new ControlServer({ socketPath, spool, status: () => fakeStatus, objectsQueued: () => undefined, log: createLogger('silent') });
  await t.rejects(second.start(), { code: 'CONTROL_REQUEST_FAILED', message: /another process listens/ });
  await server.stop();
  await spool.close();

  await writeFile(socketPath, 'not a socket');
  const third = new ControlServer({ socketPath, spool, status: () => fakeStatus, objectsQueued: () => undefined, log: createLogger('silent') });
  await t.rejects(third.start(), { message: /is not a socket/ });
});

t.test('client reports no daemon', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-control-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  t.equal(await ControlClient.connect(path.join(directory, 'control.sock')), undefined);
});
