import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from './ports.js';

export interface MosquittoPeer {
  port: number;
  url: string;
  /** Broker log lines so far (log_dest stderr), for checks that a secret never appears. */
  output(): string;
  stop(): Promise<void>;
  /** Kills the broker with SIGKILL: clients see the connection drop without a DISCONNECT. */
  kill(): Promise<void>;
}

export interface MosquittoOptions {
  /** Folder that keeps retained messages and sessions across restarts; none when absent. */
  persistenceDirectory?: string;
  /** TLS listener; `requireCertificate` makes clients present a certificate signed by `caFile`. */
  tls?: { caFile: string; certFile: string; keyFile: string; requireCertificate: boolean };
  /** mosquitto_passwd file; anonymous clients are rejected when given. */
  passwordFile?: string;
}

/** Starts a real Mosquitto broker on a free 127.0.0.1 port with a generated config. */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<MosquittoPeer> {
  return startMosquittoOnPort(await freePort(), options);
}

/** Starts Mosquitto on a given 127.0.0.1 port, for tests where a client is already retrying it. */
export async function startMosquittoOnPort(port: number, options: MosquittoOptions = {}): Promise<MosquittoPeer> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-mosquitto-'));
  const configFile = path.join(directory, 'mosquitto.conf');
  // Run as the test's own user: started as root, Mosquitto would switch to user "mosquitto", which cannot read the temp files.
  const lines = [`listener ${port} 127.0.0.1`, `user ${os.userInfo().username}`, `allow_anonymous ${options.passwordFile ? 'false' : 'true'}`, 'log_dest stderr', 'log_type all'];
  if (options.persistenceDirectory) lines.push('persistence true', `persistence_location ${options.persistenceDirectory}/`, 'autosave_interval 1');
  else lines.push('persistence false');
  if (options.tls) {
    lines.push(`cafile ${options.tls.caFile}`, `certfile ${options.tls.certFile}`, `keyfile ${options.tls.keyFile}`, `require_certificate ${options.tls.requireCertificate}`);
  }
  if (options.passwordFile) lines.push(`password_file ${options.passwordFile}`);
  await writeFile(configFile, `${lines.join('\n')}\n`);

  const child = spawn('mosquitto', ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-200_000)));

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

  const exited = new Promise((resolve) => child.once('exit', resolve));
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      await exited;
    }
    await rm(directory, { recursive: true, force: true });
  };
  return {
    port,
    url: `${options.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
    output: () => output,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
  };
}
