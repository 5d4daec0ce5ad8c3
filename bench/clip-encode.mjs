#!/usr/bin/env node
// Measures the cost of the continuous clip pre-record at 1080p30 and 1080p60,
// against the ffmpeg CLI encoding the same source with the same settings.
// For each rate, a child Node process runs a VideoSource and a ClipSource
// (decode, convert, libx264 encode into the pre-record ring) on the simulator
// graph, and `ffmpeg -f lavfi -i GRAPH -c:v libx264 ... -f null -` encodes the
// same graph with the same preset, CRF, VBV limits, level, key-frame interval,
// B-frames off and High Profile. CPU is user + system time of each process,
// all threads, from /proc/<pid>/stat after the warm-up; memory is the peak RSS
// (VmHWM). The ratio is of CPU per encoded frame, because a process that
// falls behind encodes fewer frames. The graph itself (drawing, realtime
// pacing) costs CPU in both, so the ratio compares whole processes. The warm-up lasts until the ring contains the
// whole pre-record, so that the RSS includes it.
// Runs from the compiled dist/ tree: build first with `npx tsc -p .`.
// Usage: node bench/clip-encode.mjs [--rates 30,60] [--preset superfast]
//          [--crf 23] [--pre-record 10] [--seconds 10]
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '30,60' },
    preset: { type: 'string', default: 'superfast' },
    crf: { type: 'string', default: '23' },
    'pre-record': { type: 'string', default: '10' },
    seconds: { type: 'string', default: '10' },
  },
});
const rates = values.rates.split(',').map(Number);
const preset = values.preset;
const crf = Number(values.crf);
const preRecordSeconds = Number(values['pre-record']);
const seconds = Number(values.seconds);
const keyFrameIntervalSeconds = 1;
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const dist = path.join(root, 'dist');

function log(line) {
  process.stderr.write(`clip-encode: ${line}\n`);
}

/** CPU seconds (user + system, all threads) used so far by a process. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
}

/** Reads a memory figure of /proc/<pid>/status, such as VmHWM (peak RSS), in MiB. */
function statusMiB(pid, field) {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((entry) => entry.startsWith(`${field}:`));
  return Number(line.split(/\s+/)[1]) / 1024;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits `warmupMs`, samples CPU and the frames encoded (from `framesEncoded()`)
 * over `seconds`, reads the peak RSS, then stops the process.
 */
async function measure(name, child, warmupMs, framesEncoded) {
  const exited = once(child, 'exit');
  await sleep(warmupMs);
  if (child.exitCode !== null) throw new Error(`${name} exited early with ${child.exitCode}`);
  const startCpu = cpuSeconds(child.pid);
  const startFrames = framesEncoded();
  const startedAt = process.hrtime.bigint();
  await sleep(seconds * 1000);
  const cpu = cpuSeconds(child.pid) - startCpu;
  const frames = framesEncoded() - startFrames;
  const wall = Number(process.hrtime.bigint() - startedAt) / 1e9;
  const peakRss = statusMiB(child.pid, 'VmHWM');
  child.kill('SIGTERM');
  await exited;
  const cores = cpu / wall;
  // CPU per frame compares fairly when one process falls behind and encodes fewer frames.
  const cpuMsPerFrame = frames > 0 ? (cpu * 1000) / frames : NaN;
  log(`${name}: ${cores.toFixed(3)} cores over ${wall.toFixed(1)} s, ${frames} frames encoded (${(frames / wall).toFixed(1)} fps), ${cpuMsPerFrame.toFixed(2)} ms CPU per frame, peak RSS ${peakRss.toFixed(0)} MiB`);
  return { cores, framesPerSecond: frames / wall, cpuMsPerFrame, peakRssMiB: peakRss };
}

/** Builds the child's script: a VideoSource and a ClipSource on the graph, printing their status once a second. */
function clipSourceScript(graph) {
  const clip = { preRecordSeconds, encoder: { preset, crf, keyFrameIntervalSeconds } };
  return `
    import { pino } from 'pino';
    import { VideoSource } from ${JSON.stringify(path.join(dist, 'video', 'video-source.js'))};
    import { ClipSource } from ${JSON.stringify(path.join(dist, 'video', 'clip-source.js'))};
    import { videoSchema } from ${JSON.stringify(path.join(dist, 'profile', 'schema.js'))};
    import { clipSchema, imageSchema } from ${JSON.stringify(path.join(dist, 'profile', 'capture-schema.js'))};
    // Logs go to stderr: stdout carries the status lines.
    const log = pino({ level: 'warn' }, pino.destination(2));
    const video = new VideoSource({ config: videoSchema.parse({ source: { kind: 'lavfi', url: ${JSON.stringify(graph)} } }), log });
    const source = new ClipSource({ video, config: clipSchema.parse(${JSON.stringify(clip)}), image: imageSchema.parse({}), log });
    source.start();
    await video.start();
    setInterval(() => process.stdout.write(JSON.stringify({ video: video.status(), clip: source.status() }) + '\\n'), 1000);
    process.on('SIGTERM', () => source.stop().then(() => video.stop()).then(() => process.exit(0)));
  `;
}

async function benchRate(rate) {
  const { simulatorGraph, findSimulatorFont } = await import(path.join(dist, 'video', 'simulator.js'));
  const graph = simulatorGraph({ width: 1920, height: 1080, frameRate: rate, fontFile: (await findSimulatorFont()) ?? null });

  const node = spawn(process.execPath, ['--input-type=module', '-e', clipSourceScript(graph)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '8' },
  });
  let status;
  let pending = '';
  node.stdout.setEncoding('utf8').on('data', (chunk) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.startsWith('{"video"')) status = JSON.parse(line);
  });
  // Once full, the ring contains the pre-record plus a second of margin.
  const endocap = await measure(`endocap 1080p${rate}`, node, (preRecordSeconds + 3) * 1000, () => status?.clip.encoder.framesEncoded ?? 0);
  const framesDropped = status?.clip.encoder.framesDropped ?? 0;
  log(`endocap 1080p${rate}: ${status?.video.fps} fps decoded, ${status?.clip.encoder.framesEncoded} encoded, ${framesDropped} dropped, ring ${(status?.clip.ring.bytes / 2 ** 20).toFixed(1)} MiB over ${(status?.clip.ring.spanMs / 1000).toFixed(1)} s`);

  // The settings endocap's ClipEncoder uses, VBV limits and level included.
  const gop = Math.round(rate * keyFrameIntervalSeconds);
  const level = rate > 30 ? '4.2' : '4.1';
  const args = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-progress', 'pipe:1', '-f', 'lavfi', '-i', graph, '-c:v', 'libx264', '-preset', preset, '-crf', String(crf)];
  args.push('-maxrate', '50M', '-bufsize', '62.5M', '-g', String(gop), '-bf', '0', '-profile:v', 'high', '-level', level);
  args.push('-x264-params', '8x8dct=1:cabac=1', '-pix_fmt', 'yuv420p', '-f', 'null', '-');
  const ffmpeg = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let cliFrames = 0;
  ffmpeg.stdout.setEncoding('utf8').on('data', (chunk) => {
    for (const match of chunk.matchAll(/^frame=(\d+)$/gm)) cliFrames = Number(match[1]);
  });
  const cli = await measure(`ffmpeg CLI 1080p${rate}`, ffmpeg, 3_000, () => cliFrames);

  const ratio = endocap.cpuMsPerFrame / cli.cpuMsPerFrame;
  log(`1080p${rate} ratio endocap / ffmpeg CLI, CPU per frame: ${ratio.toFixed(2)}`);
  return {
    rate,
    endocap: { ...endocap, fps: status?.video.fps, framesDropped, ringMiB: status?.clip.ring.bytes / 2 ** 20, ringSeconds: status?.clip.ring.spanMs / 1000 },
    ffmpegCli: cli,
    ratio,
  };
}

async function main() {
  if (!existsSync(path.join(dist, 'video', 'clip-source.js'))) {
    throw new Error('dist/video/clip-source.js not found: build with `npx tsc -p .` first');
  }
  const ffmpegVersion = execFileSync('ffmpeg', ['-version']).toString().split('\n')[0];
  log(`preset ${preset}, CRF ${crf}, ${preRecordSeconds} s pre-record, ${seconds} s measured per process, ${execFileSync('nproc').toString().trim()} cores, ${ffmpegVersion}`);
  const results = [];
  for (const rate of rates) results.push(await benchRate(rate));
  process.stdout.write(`${JSON.stringify({ preset, crf, preRecordSeconds, seconds, results })}\n`);
}

main().catch((error) => {
  log(`failed: ${error.message}`);
  process.exitCode = 1;
});
