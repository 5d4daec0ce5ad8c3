#!/usr/bin/env node
// Compares the CPU cost of endocap's VideoSource with the ffmpeg CLI on the
// same lavfi graph for the same time: a child Node process runs only a
// VideoSource (decode, frame ring, fps measurement), and `ffmpeg -f lavfi -i
// GRAPH -f null -` decodes the same graph. CPU is user + system time of each
// process, all threads, read from /proc/<pid>/stat after a warm-up.
// The graph itself (test pattern, realtime pacing) costs CPU in both, so the
// ratio compares whole processes, not the decode overhead alone.
// Runs from the compiled dist/ tree: build first with `npx tsc -p .`.
// Usage: node bench/video-cpu.mjs [--seconds 10] [--warmup 2]
//          [--graph 'testsrc2=size=1920x1080:rate=60,realtime' | --simulator]
//          [--width 1920 --height 1080 --rate 60]
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    graph: { type: 'string' },
    simulator: { type: 'boolean', default: false },
    width: { type: 'string', default: '1920' },
    height: { type: 'string', default: '1080' },
    rate: { type: 'string', default: '60' },
  },
});
const seconds = Number(values.seconds);
const warmupSeconds = Number(values.warmup);
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const distVideo = path.join(root, 'dist', 'video');

function log(line) {
  process.stderr.write(`video-cpu: ${line}\n`);
}

/** CPU seconds (user + system, all threads) used so far by a process, from /proc. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

function rssMiB(pid) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((entry) => entry.startsWith('VmRSS:'));
  return Number(line.split(/\s+/)[1]) / 1024;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Samples a running process's CPU over `seconds` after `warmupSeconds`, then kills it. */
async function measure(name, child) {
  const exited = once(child, 'exit');
  await sleep(warmupSeconds * 1000);
  if (child.exitCode !== null) throw new Error(`${name} exited early with ${child.exitCode}`);
  const startCpu = cpuSeconds(child.pid);
  const startedAt = process.hrtime.bigint();
  await sleep(seconds * 1000);
  const cpu = cpuSeconds(child.pid) - startCpu;
  const wall = Number(process.hrtime.bigint() - startedAt) / 1e9;
  const rss = rssMiB(child.pid);
  child.kill('SIGTERM');
  await exited;
  const cores = cpu / wall;
  log(`${name}: ${cpu.toFixed(2)} CPU s in ${wall.toFixed(2)} s = ${cores.toFixed(3)} cores, RSS ${rss.toFixed(0)} MiB`);
  return { cpuSeconds: cpu, wallSeconds: wall, cores, rssMiB: rss };
}

/** Builds the child's script: a VideoSource on the graph that prints its status on stdout once a second. */
function videoSourceScript(graph) {
  return `
    import { pino } from 'pino';
    import { VideoSource } from ${JSON.stringify(path.join(distVideo, 'video-source.js'))};
    import { videoSchema } from ${JSON.stringify(path.join(root, 'dist', 'profile', 'schema.js'))};
    const config = videoSchema.parse({ source: { kind: 'lavfi', url: ${JSON.stringify(graph)} } });
    const source = new VideoSource({ config, log: pino({ level: 'warn' }) });
    await source.start();
    setInterval(() => process.stdout.write(JSON.stringify(source.status()) + '\\n'), 1000);
    process.on('SIGTERM', () => source.stop().then(() => process.exit(0)));
  `;
}

async function main() {
  if (!existsSync(path.join(distVideo, 'video-source.js'))) {
    throw new Error('dist/video/video-source.js not found: build with `npx tsc -p .` first');
  }
  const width = Number(values.width);
  const height = Number(values.height);
  const rate = Number(values.rate);
  let graph = values.graph ?? `testsrc2=size=${width}x${height}:rate=${rate},realtime`;
  if (values.simulator) {
    const { simulatorGraph, findSimulatorFont } = await import(path.join(distVideo, 'simulator.js'));
    graph = simulatorGraph({ width, height, frameRate: rate, fontFile: (await findSimulatorFont()) ?? null });
  }
  log(`graph: ${values.simulator ? `simulator ${width}x${height}@${rate}` : graph}`);
  log(`${warmupSeconds} s warm-up, then ${seconds} s measured, on ${execFileSync('nproc').toString().trim()} cores`);

  const node = spawn(process.execPath, ['--input-type=module', '-e', videoSourceScript(graph)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '8' },
  });
  let lastStatus;
  node.stdout.setEncoding('utf8').on('data', (chunk) => {
    const lines = chunk.trim().split('\n');
    lastStatus = JSON.parse(lines[lines.length - 1]);
  });
  const videoSource = await measure('VideoSource', node);
  log(`VideoSource status at the end: ${JSON.stringify(lastStatus)}`);

  const ffmpeg = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-f', 'lavfi', '-i', graph, '-f', 'null', '-'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const cli = await measure('ffmpeg CLI', ffmpeg);

  const ratio = videoSource.cores / cli.cores;
  log(`ratio VideoSource / ffmpeg CLI: ${ratio.toFixed(2)}`);
  process.stdout.write(`${JSON.stringify({ graph: values.simulator ? 'simulator' : graph, width, height, rate, seconds, videoSource, ffmpegCli: cli, fps: lastStatus?.fps, ratio })}\n`);
}

main().catch((error) => {
  log(`failed: ${error.message}`);
  process.exitCode = 1;
});
