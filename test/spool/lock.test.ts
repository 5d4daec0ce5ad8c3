import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { Spool } from '../../src/spool/spool.js';
import { memoryLogger, plain } from './fixtures/objects.js';

async function tempDirectory(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-lock-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

function newSpool(directory: string, log = createLogger('silent')): Spool {
  return new Spool({ directory, destinations: plain('a'), log });
}

/** Pid of a process that has exited, so no process runs with it (until the kernel reuses it). */
async function deadPid(): Promise<number> {
  const child = spawn('true');
  await once(child, 'exit');
  if (child.pid === undefined) throw new Error('true did not start');
  return child.pid;
}

t.test('second open of a spool is rejected', async (t) => {
  const directory = await tempDirectory(t);
  const first = newSpool(directory);
  await first.open();
  const lock = JSON.parse(await readFile(path.join(directory, 'spool.lock'), 'utf8')) as { pid: number };
  t.equal(lock.pid, process.pid, 'the lock names its holder');

  const second = newSpool(directory);
  await t.rejects(second.open(), { code: 'SPOOL_LOCKED', message: new RegExp(`in use by process ${process.pid}`) });
  await t.rejects(second.add(Buffer.alloc(0), { sopClassUid: '1.2', sopInstanceUid: '1.2.3', transferSyntaxUid: '1.2.4' }), { code: 'SPOOL_WRITE_FAILED' }, 'unusable after a failed open');

  await first.close();
  await t.rejects(stat(path.join(directory, 'spool.lock')), { code: 'ENOENT' }, 'close removes the lock');
  const third = newSpool(directory);
  await third.open();
  await third.close();
});

t.test('lock of a dead process is taken over', async (t) => {
  const directory = await tempDirectory(t);
  const pid = await deadPid();
  await writeFile(path.join(directory, 'spool.lock'), JSON.stringify({ pid, acquiredAt: '2026-12-14T08:00:00.000Z' }));
  const { log, lines } = memoryLogger();
  const spool = newSpool(directory, log);
  await spool.open();
  const takeover = lines().find((line) => line.msg === 'stale spool lock taken over');
  t.equal(takeover?.pid, pid, 'the takeover is logged with the dead pid');
  const lock = JSON.parse(await readFile(path.join(directory, 'spool.lock'), 'utf8')) as { pid: number };
  t.equal(lock.pid, process.pid);
  await spool.close();
});

t.test('lock of a reused pid is taken over', async (t) => {
  const directory = await tempDirectory(t);
  // Our own pid, but started at another time: the process that wrote it is gone and the pid was reused.
  await writeFile(path.join(directory, 'spool.lock'), JSON.stringify({ pid: process.pid, startTicks: '1', acquiredAt: '2026-12-14T08:00:00.000Z' }));
  const spool = newSpool(directory);
  await spool.open();
  await spool.close();
  t.pass('opened');
});

t.test('lock from an earlier boot is taken over', async (t) => {
  const directory = await tempDirectory(t);
  await writeFile(path.join(directory, 'spool.lock'), JSON.stringify({ pid: process.pid, bootId: 'not-this-boot', acquiredAt: '2026-12-14T08:00:00.000Z' }));
  const spool = newSpool(directory);
  await spool.open();
  await spool.close();
  t.pass('opened');
});

t.test('unreadable lock file is taken over', async (t) => {
  const directory = await tempDirectory(t);
  await writeFile(path.join(directory, 'spool.lock'), '');
  const spool = newSpool(directory);
  await spool.open();
  await spool.close();
  t.pass('opened');
});

t.test('close keeps a lock taken over by another process', async (t) => {
  const directory = await tempDirectory(t);
  const spool = newSpool(directory);
  await spool.open();
  const foreign = JSON.stringify({ pid: 1, acquiredAt: '2026-12-14T08:00:00.000Z' });
  await writeFile(path.join(directory, 'spool.lock'), foreign);
  await spool.close();
  t.equal(await readFile(path.join(directory, 'spool.lock'), 'utf8'), foreign, 'not removed');
});
