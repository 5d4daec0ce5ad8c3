import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { waitFor } from './ports.js';

const root = path.resolve(import.meta.dirname, '../..');

export interface LogLine {
  level: string;
  msg: string;
  [key: string]: unknown;
}

export interface DaemonProcess {
  child: ChildProcess;
  /** Every JSON log line printed so far. */
  lines: LogLine[];
  /** Everything printed on stdout and stderr, for leak checks. */
  output(): string;
  waitForLog(message: string, count?: number, timeoutMs?: number): Promise<void>;
  count(message: string): number;
  /** Sends SIGTERM and waits for the exit code. */
  stop(): Promise<number | null>;
  /** Sends SIGKILL and waits for the process to be gone. */
  kill(): Promise<void>;
}

/** Runs the built daemon (`dist/cli/main.js run`) as a child process, as systemd would. */
export function startDaemon(profileFile: string, options: { env?: Record<string, string> } = {}): DaemonProcess {
  const child = spawn(process.execPath, [path.join(root, 'dist/cli/main.js'), 'run', '--profile', profileFile], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
  });
  const lines: LogLine[] = [];
  let raw = '';
  let pending = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const text = chunk.toString();
    raw += text;
    pending += text;
    const parts = pending.split('\n');
    pending = parts.pop() ?? '';
    for (const part of parts) {
      if (!part.trim()) continue;
      try {
        lines.push(JSON.parse(part) as LogLine);
      } catch {
        lines.push({ level: 'unparsed', msg: part });
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    raw += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const count = (message: string): number => lines.filter((line) => line.msg === message).length;
  return {
    child,
    lines,
    output: () => raw,
    count,
    async waitForLog(message: string, wanted = 1, timeoutMs = 30_000): Promise<void> {
      await waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode} while waiting for "${message}":\n${raw.slice(-4_000)}`);
          return count(message) >= wanted;
        },
        timeoutMs,
        `${wanted} log line(s) "${message}"`,
      );
    },
    async stop(): Promise<number | null> {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill(): Promise<void> {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
