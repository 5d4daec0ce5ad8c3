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
import { dicomDestinations, type DestinationConfig, type Profile } from '../profile/schema.js';
import { waitForSignal } from './run-command.js';

const HELP = `Usage: endocap demo [--captures N] [--clips N] [--clip-seconds S] [--interval-ms MS] [--output DIR]

Runs the whole chain with no hardware and no outside servers: the simulated
tower video (hw-profiles/simulator.yaml), a pedal, an in-process DICOM
receiver standing in for PACS and an in-process MQTT broker, both on
127.0.0.1 on free ports.

Options:
  --captures N      Press the pedal N times, wait until the receiver has every
                    object, print where they are and exit. Without it, the
                    space bar takes a still, c starts and stops a clip and q
                    quits (needs a terminal).
  --clips N         Record N clips, each with the profile's pre-record, after
                    the stills; wait until the receiver has every object.
  --clip-seconds S  Seconds each clip records after its start (default 3).
  --interval-ms MS  Time between simulated presses (default 1000).
  --output DIR      Folder for received objects, spool, state and log
                    (default ./demo-output).`;

const SIMULATOR_PROFILE = fileURLToPath(new URL('../../hw-profiles/simulator.yaml', import.meta.url));

export async function runDemoCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      captures: { type: 'string' },
      clips: { type: 'string' },
      'clip-seconds': { type: 'string', default: '3' },
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
  const clips = values.clips === undefined ? undefined : Number(values.clips);
  if (clips !== undefined && (!Number.isInteger(clips) || clips < 1 || clips > 100)) {
    process.stderr.write(`endocap demo: --clips must be a whole number from 1 to 100, got "${values.clips}"\n`);
    return 64;
  }
  const clipSeconds = Number(values['clip-seconds']);
  if (!Number.isFinite(clipSeconds) || clipSeconds <= 0 || clipSeconds > 600) {
    process.stderr.write(`endocap demo: --clip-seconds must be a number of seconds from above 0 to 600, got "${values['clip-seconds']}"\n`);
    return 64;
  }
  const intervalMs = Number(values['interval-ms']);
  if (!Number.isFinite(intervalMs) || intervalMs < 0) {
    process.stderr.write(`endocap demo: --interval-ms must be a number of milliseconds, got "${values['interval-ms']}"\n`);
    return 64;
  }
  const scripted = captures !== undefined || clips !== undefined;
  if (!scripted && !process.stdin.isTTY) {
    process.stderr.write('endocap demo: no terminal for the keyboard pedal; pass --captures N or --clips N to press it N times\n');
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
  const daemon = new Daemon({ profile, log, interactive: !scripted, clips: clips !== undefined ? true : undefined });

  let received = 0;
  receiver.on('objectReceived', ({ file }) => {
    received += 1;
    say(`received ${path.relative(process.cwd(), file)}`);
  });
  daemon.on('stillCaptured', ({ objectId, latencyMs }) => say(`still ${objectId} captured and spooled (${latencyMs} ms after the press)`));
  daemon.on('captureFailed', ({ reason }) => say(`capture failed: ${reason}`));
  daemon.on('clipStarted', ({ clipId, part, preRecordMs }) => say(`clip ${clipId} part ${part} started with ${(preRecordMs / 1000).toFixed(1)} s of pre-record`));
  daemon.on('clipCaptured', ({ clipId, part, objectId, bytes }) => say(`clip ${clipId} part ${part} spooled as ${objectId} (${bytes} bytes)`));
  daemon.on('clipFailed', ({ clipId, reason }) => say(`clip ${clipId ?? '(not started)'} failed: ${reason}`));

  say(`DICOM receiver on 127.0.0.1:${dicomPort}, MQTT broker on 127.0.0.1:${mqttPort}, log in ${path.relative(process.cwd(), logFile)}`);
  await daemon.start();

  let exitCode = 0;
  if (!scripted) {
    say('space bar: take a still, c: start or stop a clip, q: quit');
    await Promise.race([waitForSignal(log), new Promise<void>((resolve) => daemon.once('quitRequested', resolve))]);
  } else {
    const plan = { captures: captures ?? 0, clips: clips ?? 0, clipSeconds, preRecordSeconds: profile.clip.preRecordSeconds };
    exitCode = await pressAndWait(daemon, plan, intervalMs, () => received);
  }

  await daemon.stop();
  await broker.stop();
  await receiver.stop();
  log.flush();

  const files = await readdir(receivedDirectory).catch(() => []);
  say(`${received} object(s) received in this run; ${files.length} file(s) in ${receivedDirectory}`);
  say(`spool: ${profile.spool.directory}, MQTT messages published: ${mqttMessages}`);
  return exitCode;
}

interface DemoPlan {
  captures: number;
  clips: number;
  clipSeconds: number;
  preRecordSeconds: number;
}

async function pressAndWait(daemon: Daemon, plan: DemoPlan, intervalMs: number, received: () => number): Promise<number> {
  const { captures, clips } = plan;
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
  if (clips > 0) {
    // Let the pre-record stream fill, so that the first clip has all of it.
    say(`waiting ${plan.preRecordSeconds} s for the pre-record to fill`);
    await sleep(plan.preRecordSeconds * 1000);
  }
  for (let clip = 1; clip <= clips; clip += 1) {
    say(`clip ${clip} of ${clips}: start, ${plan.clipSeconds} s, stop`);
    void daemon.press('clip');
    await sleep(plan.clipSeconds * 1000);
    void daemon.press('clip');
    await sleep(Math.min(intervalMs, 1_000));
  }
  const expected = captures + clips;
  const deliveryDeadline = Date.now() + 60_000;
  while (received() < expected) {
    if (Date.now() > deliveryDeadline) {
      say(`only ${received()} of ${expected} objects reached the receiver within 60 s; see the log`);
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
    destinations: [{ ...(dicomDestinations(base)[0] ?? defaultDestination()), host: '127.0.0.1', port: dicomPort, calledAeTitle: 'PACS' }],
    mqtt: base.mqtt ? { ...base.mqtt, url: `mqtt://127.0.0.1:${mqttPort}` } : undefined,
    spool: { ...base.spool, directory: path.join(output, 'spool') },
    stateDirectory: path.join(output, 'state'),
  };
}

function defaultDestination(): DestinationConfig {
  return {
    kind: 'dicom',
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
