#!/usr/bin/env node
// Measures, in one run on one machine, at 1080p60:
//  1. pedal latency: a byte written to a socat pty -> the still's DICOM file
//     durable in the spool (renamed into place), p50/p99 over N presses;
//  2. CPU of the daemon while it decodes the source and waits for presses,
//     against the ffmpeg CLI decoding the same source for the same time.
// The source is a 1080p60 H.264 file made with the ffmpeg CLI, played in
// real time by both (a stand-in for an H.264 network source or capture card).
// Usage: npm run bench [-- --presses 100 --seconds 20]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: { presses: { type: 'string', default: '100' }, seconds: { type: 'string', default: '20' }, keep: { type: 'boolean' } },
});
const presses = Number(values.presses);
const seconds = Number(values.seconds);
const work = mkdtempSync(path.join(os.tmpdir(), 'endocap-bench-'));
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

function log(line) {
  process.stderr.write(`bench: ${line}\n`);
}

/** CPU seconds (user + system) used so far by a process, from /proc. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

function rssMiB(pid) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((entry) => entry.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]) / 1024;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// 1. The source: 10 s of 1080p60 H.264, looped by the reader.
const source = path.join(work, 'source-1080p60.mp4');
log('encoding the 1080p60 H.264 source with the ffmpeg CLI');
execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=60', '-t', '10', '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p', '-g', '60', source]);

// 2. The daemon on a pty footswitch, with no destination, so the spool keeps every still.
const devicePath = path.join(work, 'pedal');
const testPath = path.join(work, 'pedal-test');
const socat = spawn('socat', [`pty,raw,echo=0,link=${devicePath}`, `pty,raw,echo=0,link=${testPath}`], { stdio: 'ignore' });
await waitFor(() => existsSync(devicePath) && existsSync(testPath), 5_000, 'socat');

const profile = path.join(work, 'profile.json');
writeFileSync(
  profile,
  JSON.stringify({
    formatVersion: 1,
    station: { aeTitle: 'ENDOCAP_BENCH', stationName: 'BENCH', uidRoot: '1.2.826.0.1.3680043.10.1437', boxId: 'bench' },
    video: { source: { kind: 'file', url: source }, ringFrames: 4, signalTimeoutMs: 2000 },
    footswitch: {
      kind: 'serial',
      path: devicePath,
      protocol: { kind: 'bytes', down: [0x31], up: [0x30] },
      debounceMs: 30,
      gestures: { short: 'still', long: 'none', double: 'none' },
    },
    destinations: [],
    spool: { directory: path.join(work, 'spool') },
    stateDirectory: path.join(work, 'state'),
    logLevel: 'info',
  }),
);
const daemon = spawn(process.execPath, [path.join(root, 'dist/cli/main.js'), 'run', '--profile', profile], { stdio: ['ignore', 'pipe', 'inherit'] });
let daemonLog = '';
daemon.stdout.on('data', (chunk) => (daemonLog += chunk.toString()));
await waitFor(() => daemonLog.includes('"video signal acquired"') && daemonLog.includes('"footswitch connected"'), 30_000, 'daemon ready');
await sleep(3_000);

// CPU while idle-capturing.
log(`measuring daemon CPU for ${seconds} s`);
const daemonCpuStart = cpuSeconds(daemon.pid);
await sleep(seconds * 1000);
const daemonCpu = (cpuSeconds(daemon.pid) - daemonCpuStart) / seconds;
const daemonRss = rssMiB(daemon.pid);

// Pedal latency.
log(`pressing the pedal ${presses} times`);
const objects = path.join(work, 'spool', 'objects');
let resolveNext;
const watcher = watch(objects, (event, name) => {
  if (name && name.endsWith('.dcm') && existsSync(path.join(objects, name))) resolveNext?.(process.hrtime.bigint());
});
const pedal = await open(testPath, 'w');
const latencies = [];
for (let press = 0; press < presses; press += 1) {
  const durable = new Promise((resolve) => (resolveNext = resolve));
  const written = process.hrtime.bigint();
  await pedal.write(Buffer.from([0x31]));
  const timeout = sleep(5_000).then(() => undefined);
  const at = await Promise.race([durable, timeout]);
  resolveNext = undefined;
  if (at === undefined) throw new Error(`press ${press}: no object in the spool within 5 s`);
  latencies.push(Number(at - written) / 1e6);
  await pedal.write(Buffer.from([0x30]));
  await sleep(150);
}
await pedal.close();
watcher.close();

daemon.kill('SIGTERM');
await new Promise((resolve) => daemon.once('exit', resolve));
socat.kill('SIGTERM');

// The reference: the ffmpeg CLI decoding the same file in real time for the same time.
log(`measuring ffmpeg CLI CPU for ${seconds} s`);
const ffmpeg = spawn('ffmpeg', ['-v', 'error', '-re', '-stream_loop', '-1', '-i', source, '-f', 'null', '-'], { stdio: 'ignore' });
await sleep(3_000);
const ffmpegCpuStart = cpuSeconds(ffmpeg.pid);
await sleep(seconds * 1000);
const ffmpegCpu = (cpuSeconds(ffmpeg.pid) - ffmpegCpuStart) / seconds;
const ffmpegRss = rssMiB(ffmpeg.pid);
ffmpeg.kill('SIGTERM');

const sorted = [...latencies].sort((a, b) => a - b);
const result = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
  source: '1080p60 H.264 file (testsrc2, libx264 veryfast), real-time playback',
  presses,
  latencyMs: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) },
  cpuCores: { daemon: daemonCpu, ffmpegCli: ffmpegCpu, ratio: daemonCpu / ffmpegCpu },
  rssMiB: { daemon: daemonRss, ffmpegCli: ffmpegRss },
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(
  [
    '',
    `pedal byte -> object durable in spool, ${presses} presses: p50 ${result.latencyMs.p50.toFixed(1)} ms, p99 ${result.latencyMs.p99.toFixed(1)} ms (target p99 < 100 ms)`,
    `CPU while idle-capturing: daemon ${daemonCpu.toFixed(3)} cores, ffmpeg CLI ${ffmpegCpu.toFixed(3)} cores, ratio ${result.cpuCores.ratio.toFixed(2)} (target <= 1.2)`,
    `RSS: daemon ${daemonRss.toFixed(0)} MiB, ffmpeg CLI ${ffmpegRss.toFixed(0)} MiB`,
    '',
  ].join('\n'),
);
if (values.keep) {
  writeFileSync(path.join(work, 'daemon.log'), daemonLog);
  process.stderr.write(`bench: kept ${work}\n`);
} else {
  rmSync(work, { recursive: true, force: true });
}
