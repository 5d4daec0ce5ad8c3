import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { waitFor } from './ports.js';

export interface PtyPair {
  /** Link the daemon opens as its serial port. */
  devicePath: string;
  /** Link the test writes pedal bytes into. */
  testPath: string;
  /** Removes the pair, as unplugging a USB-serial adapter does. */
  unplug(): Promise<void>;
  /** Creates the pair again under the same paths. */
  plug(): Promise<void>;
}

/**
 * A real pseudo-terminal pair made by socat: bytes written to `testPath`
 * arrive on `devicePath` as from a serial footswitch.
 */
export async function startPtyPair(devicePath: string, testPath: string): Promise<PtyPair> {
  let child: ChildProcess | undefined;

  async function plug(): Promise<void> {
    child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${devicePath}`, `pty,raw,echo=0,link=${testPath}`], { stdio: 'ignore' });
    await waitFor(() => existsSync(devicePath) && existsSync(testPath), 5_000, 'socat to create the pty links');
  }

  async function unplug(): Promise<void> {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGTERM');
    await exited;
  }

  await plug();
  return { devicePath, testPath, unplug, plug };
}
