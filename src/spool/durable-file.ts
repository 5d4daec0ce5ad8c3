import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

/** Suffix of files being written; a file with it is never a committed object or state. */
export const TEMP_SUFFIX = '.tmp';

/** Flushes a folder's entries (creations, renames, removals) to disk. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates `folder` and any missing parents, then flushes every folder above
 * it, up to `/`, so that the path survives a power cut. A folder found in
 * place may still be unflushed: made by a process killed before its flush, or
 * by another program such as systemd (StateDirectory). Entries made later
 * inside `folder` still need `folder` itself flushed.
 */
export async function makeFolderDurably(folder: string): Promise<void> {
  const target = path.resolve(folder);
  const first = await mkdir(target, { recursive: true });
  const top = first === undefined ? target : path.resolve(first);
  for (let child = target; path.dirname(child) !== child; child = path.dirname(child)) {
    const parent = path.dirname(child);
    try {
      await syncDirectory(parent);
    } catch (error) {
      // A folder above the ones made here may be unreadable to the service user (mode 0711): it cannot be flushed.
      const madeHere = parent.length >= top.length;
      if (madeHere || (error as NodeJS.ErrnoException).code !== 'EACCES') throw error;
    }
  }
}

/**
 * Writes `data` to `file` and fsyncs it. Its name in the folder survives a
 * power cut only once the folder is flushed too. `flag` is the open flag,
 * 'wx' to fail when the file exists.
 */
export async function writeFileFlushed(file: string, data: Buffer | string, flag: 'w' | 'wx' = 'w'): Promise<void> {
  const handle = await open(file, flag);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes `data` to `target` so that after a power cut the target contains either
 * its previous content or all of `data`: write a temp file beside it, fsync it,
 * rename it over the target (the commit point), then fsync the folder so the
 * rename itself survives. Callers must not write the same target concurrently.
 * With `syncFolder: false` the last fsync is skipped: the target then contains
 * the previous or the new content after a power cut, never a torn one.
 */
export async function writeFileDurably(target: string, data: Buffer | string, options: { syncFolder?: boolean } = {}): Promise<void> {
  const temp = target + TEMP_SUFFIX;
  try {
    await writeFileFlushed(temp, data);
    await rename(temp, target);
  } catch (error) {
    // The write error is the one to report. A temp file that cannot be removed
    // now is removed by the spool's recovery at the next open.
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  if (options.syncFolder ?? true) await syncDirectory(path.dirname(target));
}

/**
 * Removes files and then flushes their folder unless `syncFolder` is false.
 * Files already gone are skipped, and so are folders of those names: the
 * names of the folders left are returned.
 */
export async function removeFilesDurably(directory: string, names: string[], options: { syncFolder?: boolean } = {}): Promise<string[]> {
  const folders: string[] = [];
  for (const name of names) {
    try {
      await unlink(path.join(directory, name));
    } catch (error) {
      const { code } = error as NodeJS.ErrnoException;
      if (code === 'EISDIR') folders.push(name);
      else if (code !== 'ENOENT') throw error;
    }
  }
  if (options.syncFolder ?? true) await syncDirectory(directory);
  return folders;
}
