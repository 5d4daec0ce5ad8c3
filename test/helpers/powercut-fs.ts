import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Test } from 'tap';
import { PYTHON } from './dicom-tools.js';

const run = promisify(execFile);
const script = new URL('./powercut_fs.py', import.meta.url).pathname;

/** Operation counts the filesystem keeps since it was mounted. */
export interface PowerCutFsStats {
  cuts: number;
  fsync: number;
  fsyncdir: number;
  writes: number;
  renames: number;
  links: number;
  unlinks: number;
  creates: number;
}

export interface PowerCutFs {
  mountpoint: string;
  /**
   * Cuts the power: what was not synced is lost (see powercut_fs.py). With
   * `tornSeed`, a random prefix of the unsynced writes and folder changes
   * survives, the last write possibly torn or zero-filled. Resolves once the
   * filesystem shows the state after the cut. Processes using the mount must
   * have exited first, as they would have with the power.
   */
  cut(tornSeed?: number): Promise<void>;
  stats(): Promise<PowerCutFsStats>;
  /** Unmounts the filesystem and removes the mount point. */
  stop(): Promise<void>;
}

/** Reason the power-cut filesystem cannot run here. `skip` is true only for a machine without FUSE. */
export interface PowerCutFsProblem {
  reason: string;
  skip: boolean;
}

/**
 * Checks what the power-cut filesystem needs: /dev/fuse, root (to mount
 * without fusermount) and python3-llfuse. Returns undefined when all are there.
 */
export async function checkPowerCutFs(): Promise<PowerCutFsProblem | undefined> {
  if (!existsSync('/dev/fuse')) return { reason: '/dev/fuse is missing, so no FUSE filesystem can be mounted', skip: true };
  if (process.getuid?.() !== 0) return { reason: 'mounting the FUSE filesystem without fusermount needs root', skip: false };
  const found = await run(PYTHON, ['-c', 'import llfuse']).then(
    () => true,
    () => false,
  );
  if (!found) return { reason: `${PYTHON} cannot import llfuse: install the Debian package python3-llfuse`, skip: false };
  return undefined;
}

/** True when `mountpoint` is listed in /proc/self/mountinfo. */
async function isMounted(mountpoint: string): Promise<boolean> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  return table.split('\n').some((line) => line.split(' ')[4] === mountpoint);
}

/** Mounts the power-cut filesystem (test/helpers/powercut_fs.py) on a new temp folder. */
export async function mountPowerCutFs(): Promise<PowerCutFs> {
  const mountpoint = await mkdtemp(path.join(tmpdir(), 'endocap-powercut-'));
  const child: ChildProcess = spawn(PYTHON, [script, mountpoint], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-8_000);
  });

  // Each command gets one line in return, in order.
  const waiting: Array<{ resolve: (line: string) => void; reject: (error: Error) => void }> = [];
  let buffered = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) waiting.shift()?.resolve(line);
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      const error = new Error(`powercut_fs.py exited (code ${code}, signal ${signal}): ${stderr}`);
      for (const waiter of waiting.splice(0)) waiter.reject(error);
      resolve();
    }),
  );
  const nextLine = (): Promise<string> => new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  const command = async (text: string): Promise<string> => {
    const line = nextLine();
    child.stdin?.write(`${text}\n`);
    return line;
  };

  const first = await nextLine();
  if (first !== 'mounted') throw new Error(`powercut_fs.py did not mount ${mountpoint}: ${first} ${stderr}`);

  return {
    mountpoint,
    async cut(tornSeed) {
      const line = await command(tornSeed === undefined ? 'cut' : `cut torn ${tornSeed}`);
      if (line !== 'cut done') throw new Error(`power cut failed: ${line}`);
    },
    async stats() {
      const line = await command('stats');
      if (!line.startsWith('stats ')) throw new Error(`invalid response to the stats command: ${line}`);
      return JSON.parse(line.slice('stats '.length)) as PowerCutFsStats;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // End of input makes the filesystem unmount itself. After SIGKILL (at 5 s) umount below removes the dead mount.
        child.stdin?.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      if (await isMounted(mountpoint)) await run('umount', ['-l', mountpoint]);
      await rmdir(mountpoint);
    },
  };
}

/**
 * Adds a test that gets a freshly mounted power-cut filesystem, unmounted in
 * teardown. Without /dev/fuse the test is skipped; without root or
 * python3-llfuse it fails.
 */
export async function testWithPowerCutFs(t: Test, name: string, body: (t: Test, fs: PowerCutFs) => Promise<void>): Promise<void> {
  const problem = await checkPowerCutFs();
  if (problem?.skip === true) {
    t.test(name, { skip: problem.reason }, async () => undefined);
    return;
  }
  t.test(name, async (t) => {
    if (problem !== undefined) {
      t.fail(problem.reason);
      return;
    }
    const fs = await mountPowerCutFs();
    t.teardown(() => fs.stop());
    await body(t, fs);
  });
}
