import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from './ports.js';

export interface MosquittoPeer {
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** Starts a real Mosquitto broker on a free 127.0.0.1 port with a generated config. */
export async function startMosquitto(): Promise<MosquittoPeer> {
  return startMosquittoOnPort(await freePort());
}

/** Starts Mosquitto on a given 127.0.0.1 port, for tests where a client is already retrying it. */
export async function startMosquittoOnPort(port: number): Promise<MosquittoPeer> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-mosquitto-'));
  const configFile = path.join(directory, 'mosquitto.conf');
  await writeFile(configFile, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'log_dest stderr', ''].join('\n'));
  const child = spawn('mosquitto', ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
  await waitFor(
    () => {
      if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}: ${output}`);
      return new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
    },
    10_000,
    'mosquitto to listen',
  );
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async stop(): Promise<void> {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}
