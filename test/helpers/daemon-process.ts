import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

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
  /** Resolves as soon as the output contains `count` lines with this message, checking each chunk of output as it arrives. */
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
  /** Checks of waitForLog calls in progress, run after each chunk of output and at exit. */
  const checks = new Set<() => void>();
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
    for (const check of checks) check();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    raw += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.once('exit', () => {
    for (const check of checks) check();
  });

  const count = (message: string): number => lines.filter((line) => line.msg === message).length;
  return {
    child,
    lines,
    output: () => raw,
    count,
    waitForLog(message: string, expected = 1, timeoutMs = 30_000): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        const finish = (error?: Error): void => {
          clearTimeout(timer);
          checks.delete(check);
          if (error) reject(error);
          else resolve();
        };
        const check = (): void => {
          if (count(message) >= expected) finish();
          else if (child.exitCode !== null || child.signalCode !== null) {
            finish(new Error(`daemon exited with ${child.exitCode ?? child.signalCode} while waiting for "${message}":\n${raw.slice(-4_000)}`));
          }
        };
        const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${expected} log line(s) "${message}"`)), timeoutMs);
        checks.add(check);
        check();
      });
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
