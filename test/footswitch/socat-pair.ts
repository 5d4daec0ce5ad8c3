import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * Two linked pseudo-terminals made by socat: the footswitch opens `devicePath`,
 * the test plays the pedal by writing into `pedalPath`. Stopping socat removes
 * both links and closes the ptys, as unplugging a USB adapter does.
 */
export class SocatPair {
  readonly devicePath: string;
  readonly pedalPath: string;
  private child: ChildProcess | undefined;
  private writer: FileHandle | undefined;

  constructor(devicePath: string, pedalPath: string) {
    this.devicePath = devicePath;
    this.pedalPath = pedalPath;
  }

  async start(): Promise<void> {
    const child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${this.devicePath}`, `pty,raw,echo=0,link=${this.pedalPath}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`socat did not start within 5 s: ${output}`)), 5_000);
      child.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
        // socat logs this once both ptys and links exist.
        if (output.includes('starting data transfer loop')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`socat exited with code ${code}: ${output}`));
      });
    });
    this.writer = await open(this.pedalPath, 'w');
  }

  /** Writes bytes as the pedal would send them. */
  async write(data: Uint8Array | string): Promise<void> {
    if (this.writer === undefined) throw new Error('socat pair is not started');
    await this.writer.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Ends socat with SIGTERM, which removes the links, and waits for it to exit. */
  async stop(): Promise<void> {
    const { child, writer } = this;
    this.child = undefined;
    this.writer = undefined;
    await writer?.close();
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 10 ms; rejects with `what` after `timeoutMs`. */
export async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(10);
  }
}
