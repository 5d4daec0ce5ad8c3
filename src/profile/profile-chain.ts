import { open, realpath } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { ProfileProblem } from './load-profile.js';
import { isMapping } from './merge-profiles.js';

/** One parsed file of an `extends` chain, before migration. */
export interface ChainFile {
  /** File name as shown in messages: the name given for the profile, and for a base that name's folder joined with the extends value. */
  file: string;
  /** Folder that relative paths in this file are resolved against. */
  directory: string;
  parsed: unknown;
}

/** The files of a chain, base first, or the problems that stopped reading it. */
export type ChainResult = { files: ChainFile[] } | { problems: ProfileProblem[] };

/** Largest profile file read; hand-written profiles are a few kilobytes. */
export const maxProfileBytes = 1024 * 1024;

/**
 * Reads a profile file as UTF-8 text. Only a regular file up to
 * `maxProfileBytes` is read, so that a device (/dev/zero), a FIFO or a huge
 * file gives an error instead of a hang or a process out of memory. Throws
 * an Error with a message that names the reason and the fix.
 */
export async function readProfileFile(file: string): Promise<string> {
  // O_NONBLOCK, so that opening a FIFO without a writer does not wait; for a regular file it changes nothing.
  const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new Error(`not a regular file but ${info.isDirectory() ? 'a directory' : 'a device, FIFO or socket'}`);
    if (info.size > maxProfileBytes) throw new Error(`${info.size} bytes, more than the ${maxProfileBytes} a profile may have`);
    const bytes = Buffer.alloc(maxProfileBytes + 1);
    const { bytesRead } = await handle.read(bytes, 0, bytes.length, 0);
    if (bytesRead > maxProfileBytes) throw new Error(`more than the ${maxProfileBytes} bytes a profile may have`);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, bytesRead));
    } catch {
      throw new Error('not UTF-8 text; save the file as UTF-8');
    }
  } finally {
    await handle.close();
  }
}

/** Parses YAML (or JSON) text; returns the problem instead of throwing. */
export function parseProfileText(text: string, file: string): { parsed: unknown } | { problem: ProfileProblem } {
  try {
    return { parsed: parseYaml(text, { prettyErrors: true, uniqueKeys: true }) };
  } catch (error) {
    const firstLine = error instanceof YAMLParseError ? (error.message.split('\n')[0] ?? error.message) : String(error);
    const message = firstLine.replace(/:\s*$/, '');
    return { problem: { file, path: '', message: `not valid YAML or JSON: ${message}` } };
  }
}

/**
 * Reads a profile and, following `extends`, each base it names. A base path
 * is relative to the folder of the file that names it. Stops at the first
 * file that cannot be read or parsed, at a cycle, and at a bad extends value.
 */
export async function readProfileChain(file: string): Promise<ChainResult> {
  const chain: ChainFile[] = [];
  const seen: string[] = [];
  let current = { file, absolute: path.resolve(file), namedBy: undefined as string | undefined };
  for (;;) {
    let text: string;
    let identity: string;
    try {
      text = await readProfileFile(current.absolute);
      // The real path, so that a symbolic link back into the chain is seen as a cycle.
      identity = await realpath(current.absolute);
    } catch (error) {
      return { problems: [readProblem(error, current.file, current.namedBy)] };
    }
    const cycleStart = seen.indexOf(identity);
    if (cycleStart >= 0 && current.namedBy !== undefined) {
      const names = [...chain.map((entry) => entry.file), current.file].slice(cycleStart);
      return { problems: [{ file: current.namedBy, path: 'extends', message: `cycle of bases: ${names.join(' extends ')}; remove one of these extends` }] };
    }
    seen.push(identity);

    const result = parseProfileText(text, current.file);
    if ('problem' in result) return { problems: [result.problem] };
    chain.push({ file: current.file, directory: path.dirname(current.absolute), parsed: result.parsed });

    const base = isMapping(result.parsed) ? result.parsed['extends'] : undefined;
    if (base === undefined) break;
    if (typeof base !== 'string' || base.trim() === '') {
      return { problems: [{ file: current.file, path: 'extends', message: `expected the file name of a base profile, such as base.yaml, got ${JSON.stringify(base)}` }] };
    }
    current = {
      file: path.isAbsolute(base) ? base : path.join(path.dirname(current.file), base),
      absolute: path.resolve(path.dirname(current.absolute), base),
      namedBy: current.file,
    };
  }
  return { files: chain.reverse() };
}

function readProblem(error: unknown, file: string, namedBy: string | undefined): ProfileProblem {
  const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
  if (namedBy === undefined) {
    const reason = missing ? 'file not found' : `cannot be read (${(error as Error).message})`;
    return { file, path: '', message: `${reason}; pass the path of an existing profile` };
  }
  const reason = missing ? `base profile ${file} not found` : `base profile ${file} cannot be read (${(error as Error).message})`;
  return { file: namedBy, path: 'extends', message: `${reason}; give its path relative to the folder of ${namedBy}` };
}
