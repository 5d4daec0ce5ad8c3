import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { sleep } from '../backoff.js';
import { Daemon } from '../daemon/daemon.js';
import { DemoDicomReceiver } from '../demo/dicom-receiver.js';
import { DemoMqttBroker } from '../demo/mqtt-broker.js';
import { createLogger } from '../log.js';
import { loadProfile } from '../profile/load-profile.js';
import type { Profile } from '../profile/schema.js';
import { waitForSignal } from './run-command.js';

const HELP = `Usage: endocap demo [--captures N] [--interval-ms MS] [--output DIR]

Runs the whole chain with no hardware and no outside servers: the simulated
tower video (hw-profiles/simulator.yaml), a pedal, an in-process DICOM
receiver standing in for PACS and an in-process MQTT broker, both on
127.0.0.1 on free ports.

Options:
  --captures N      Press the pedal N times, wait until the receiver has every
                    object, print where they are and exit. Without it, the
                    space bar takes a still and q quits (needs a terminal).
  --interval-ms MS  Time between simulated presses (default 1000).
  --output DIR      Folder for received objects, spool, state and log
                    (default ./demo-output).`;

const SIMULATOR_PROFILE = fileURLToPath(new URL('../../hw-profiles/simulator.yaml', import.meta.url));

export async function runDemoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      captures: { type: 'string' },
      'interval-ms': { type: 'string', default: '1000' },
      output: { type: 'string', default: 'demo-output' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const captures = values.captures === undefined ? undefined : Number(values.captures);
  if (captures !== undefined && (!Number.isInteger(captures) || captures < 1 || captures > 10_000)) {
    process.stderr.write(`endocap demo: --captures must be a whole number from 1 to 10000, got "${values.captures}"\n`);
    return 64;
  }
  const intervalMs = Number(values['interval-ms']);
  if (!Number.isFinite(intervalMs) || intervalMs < 0) {
    process.stderr.write(`endocap demo: --interval-ms must be a number of milliseconds, got "${values['interval-ms']}"\n`);
    return 64;
  }
  if (captures === undefined && !process.stdin.isTTY) {
    process.stderr.write('endocap demo: no terminal for the keyboard pedal; pass --captures N to press it N times\n');
    return 64;
  }

  const output = path.resolve(values.output);
  const receivedDirectory = path.join(output, 'received');
  await mkdir(output, { recursive: true });
  const logFile = path.join(output, 'endocap.log');
  const log = createLogger('info', pino.destination({ dest: logFile, sync: false, mkdir: true }));

  const receiver = new DemoDicomReceiver({ directory: receivedDirectory, aeTitle: 'PACS', log });
  const dicomPort = await receiver.start();
  const broker = new DemoMqttBroker();
  const mqttPort = await broker.start();
  let mqttMessages = 0;
  broker.onPublish(() => {
    mqttMessages += 1;
  });

  const base = await loadProfile(SIMULATOR_PROFILE);
  const profile = demoProfile(base, output, dicomPort, mqttPort);
  const daemon = new Daemon({ profile, log, interactive: captures === undefined });

  let received = 0;
  receiver.on('objectReceived', ({ file }) => {
    received += 1;
    say(`received ${path.relative(process.cwd(), file)}`);
  });
  daemon.on('stillCaptured', ({ objectId, latencyMs }) => say(`still ${objectId} captured and spooled (${latencyMs} ms after the press)`));
  daemon.on('captureFailed', ({ reason }) => say(`capture failed: ${reason}`));

  say(`DICOM receiver on 127.0.0.1:${dicomPort}, MQTT broker on 127.0.0.1:${mqttPort}, log in ${path.relative(process.cwd(), logFile)}`);
  await daemon.start();

  let exitCode = 0;
  if (captures === undefined) {
    say('space bar: take a still, q: quit');
    await Promise.race([waitForSignal(log), new Promise<void>((resolve) => daemon.once('quitRequested', resolve))]);
  } else {
    exitCode = await pressAndWait(daemon, captures, intervalMs, () => received);
  }

  await daemon.stop();
  await broker.stop();
  await receiver.stop();
  log.flush();

  const files = await readdir(receivedDirectory).catch(() => []);
  say(`${files.length} object(s) in ${receivedDirectory}`);
  say(`spool: ${profile.spool.directory}, MQTT messages published: ${mqttMessages}`);
  return exitCode;
}

async function pressAndWait(daemon: Daemon, captures: number, intervalMs: number, received: () => number): Promise<number> {
  const signalDeadline = Date.now() + 30_000;
  while (!daemon.status().videoSignal) {
    if (Date.now() > signalDeadline) {
      say('no video from the simulator within 30 s; see the log');
      return 1;
    }
    await sleep(100);
  }
  for (let press = 1; press <= captures; press += 1) {
    say(`press ${press} of ${captures}`);
    void daemon.press('still');
    if (press < captures) await sleep(intervalMs);
  }
  const deliveryDeadline = Date.now() + 60_000;
  while (received() < captures) {
    if (Date.now() > deliveryDeadline) {
      say(`only ${received()} of ${captures} objects reached the receiver within 60 s; see the log`);
      return 1;
    }
    await sleep(100);
  }
  return 0;
}

function demoProfile(base: Profile, output: string, dicomPort: number, mqttPort: number): Profile {
  return {
    ...base,
    footswitch: base.footswitch.kind === 'keyboard' ? base.footswitch : { kind: 'keyboard', gestures: { short: 'still', long: 'none', double: 'none' } },
    destinations: [{ ...(base.destinations[0] ?? defaultDestination()), host: '127.0.0.1', port: dicomPort, calledAeTitle: 'PACS' }],
    mqtt: base.mqtt ? { ...base.mqtt, url: `mqtt://127.0.0.1:${mqttPort}` } : undefined,
    spool: { directory: path.join(output, 'spool') },
    stateDirectory: path.join(output, 'state'),
  };
}

function defaultDestination(): Profile['destinations'][number] {
  return {
    name: 'pacs',
    host: '127.0.0.1',
    port: 104,
    calledAeTitle: 'PACS',
    connectTimeoutMs: 5_000,
    associationTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    retry: { initialMs: 1_000, maxMs: 60_000, multiplier: 2 },
  };
}

function say(line: string): void {
  process.stdout.write(`endocap demo: ${line}\n`);
}
