import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';

/** Content of a lock file: enough to tell a live holder from a dead one after a crash or a reboot. */
interface LockOwner {
  pid: number;
  /** Linux boot id: a lock from an earlier boot is stale whatever its pid. */
  bootId?: string;
  /** Start time of the process in clock ticks since boot (field 22 of /proc/PID/stat), against pid reuse. */
  startTicks?: string;
  acquiredAt: string;
}

/**
 * Exclusive lock on a spool folder, held by the one process that writes it:
 * the daemon, or an operator command while the daemon is stopped. A lock left
 * by a process that no longer runs is taken over.
 *
 * The lock file is created complete, by hard-linking a written temp file to
 * its name, so a reader never sees a half-written owner.
 * NOTE: two processes that find the same stale lock at the same moment can
 * both take it over. Only the daemon and an operator command ever compete, so
 * this window was left open rather than depending on flock(2), which Node lacks.
 */
export class SpoolLock {
  private readonly file: string;
  private readonly owner: LockOwner;

  private constructor(file: string, owner: LockOwner) {
    this.file = file;
    this.owner = owner;
  }

  /** Takes the lock or throws SPOOL_LOCKED naming the process that holds it. */
  static async acquire(file: string, log: Logger): Promise<SpoolLock> {
    const owner = await currentOwner();
    const text = JSON.stringify(owner);
    const temp = `${file}.${process.pid}.tmp`;
    await writeFile(temp, text, { mode: 0o644 });
    try {
      for (let attempt = 0; attempt < 3; attempt += 1) {
        try {
          await link(temp, file);
          return new SpoolLock(file, owner);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        }
        const holder = await readOwner(file);
        if (holder !== undefined && (await isRunning(holder))) {
          throw new EndocapError(ErrorCodes.SPOOL_LOCKED, `spool is in use by process ${holder.pid} (lock file ${file}); stop it or use the running daemon`);
        }
        log.warn({ file, pid: holder?.pid }, 'stale spool lock taken over');
        await unlink(file).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        });
      }
      throw new EndocapError(ErrorCodes.SPOOL_LOCKED, `failed to take the spool lock ${file}: other processes keep taking it`);
    } catch (error) {
      if (error instanceof EndocapError) throw error;
      throw new EndocapError(ErrorCodes.SPOOL_LOCKED, `failed to take the spool lock ${file}: ${errorMessage(error)}`, { cause: error });
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  /** Removes the lock file, unless another process has taken it over since. */
  async release(): Promise<void> {
    const holder = await readOwner(this.file);
    if (holder === undefined || holder.pid !== this.owner.pid || holder.acquiredAt !== this.owner.acquiredAt) return;
    await unlink(this.file).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    });
  }
}

async function currentOwner(): Promise<LockOwner> {
  const owner: LockOwner = { pid: process.pid, acquiredAt: new Date().toISOString() };
  const bootId = await readBootId();
  const startTicks = await readStartTicks(process.pid);
  if (bootId !== undefined) owner.bootId = bootId;
  if (startTicks !== undefined) owner.startTicks = startTicks;
  return owner;
}

/** Returns the lock's owner, or undefined for a missing, empty or foreign file. */
async function readOwner(file: string): Promise<LockOwner | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const parsed = JSON.parse(text) as Partial<LockOwner>;
    if (typeof parsed.pid !== 'number' || !Number.isInteger(parsed.pid) || parsed.pid <= 0) return undefined;
    return { pid: parsed.pid, bootId: parsed.bootId, startTicks: parsed.startTicks, acquiredAt: String(parsed.acquiredAt) };
  } catch {
    // Not JSON: not a lock this code wrote, so nothing holds it.
    return undefined;
  }
}

async function isRunning(owner: LockOwner): Promise<boolean> {
  const bootId = await readBootId();
  if (owner.bootId !== undefined && bootId !== undefined && owner.bootId !== bootId) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (owner.startTicks === undefined) return true;
  const startTicks = await readStartTicks(owner.pid);
  return startTicks === undefined || startTicks === owner.startTicks;
}

async function readBootId(): Promise<string | undefined> {
  try {
    return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  } catch {
    // Not Linux, or /proc is hidden: the pid check alone decides.
    return undefined;
  }
}

async function readStartTicks(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses, so count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    // The process is gone or /proc is unavailable.
    return undefined;
  }
}
