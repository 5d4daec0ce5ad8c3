import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Mounts a tmpfs of `size` (mount's syntax, for example `2m`) on
 * `mountPoint`, so that a test can run out of space for real. Mounting needs
 * root (CAP_SYS_ADMIN). Returns why it failed, or undefined once mounted.
 */
export async function mountTmpfs(mountPoint: string, size: string): Promise<string | undefined> {
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', mountPoint]);
    return undefined;
  } catch (error) {
    return `mounting a tmpfs is not permitted here: ${(error as Error).message.split('\n')[0]}`;
  }
}

/** Unmounts what mountTmpfs mounted. */
export async function unmount(mountPoint: string): Promise<void> {
  await run('umount', [mountPoint]);
}

/** Tries a mount once, for a test's `skip` option: the reason no tmpfs can be mounted here, or undefined. */
export async function tmpfsProblem(): Promise<string | undefined> {
  const probe = await mkdtemp(path.join(tmpdir(), 'endocap-tmpfs-probe-'));
  try {
    const problem = await mountTmpfs(probe, '64k');
    if (problem === undefined) await unmount(probe);
    return problem;
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
}
