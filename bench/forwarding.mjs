#!/usr/bin/env node
// Forwarding throughput: the same VL Endoscopic stills sent to the same DCMTK
// storescp, once by DCMTK storescu and once by endocap's C-STORE client.
//  1. makes N stills (default 300) of noisy 1080p JPEG (~290 KB each) with the
//     ffmpeg CLI and wraps them with buildVlEndoscopicImage (from dist/);
//  2. storescu -xy, one association for every file, TCP_NODELAY=1;
//  3. endocap storeObjects, once over one association and once over one
//     association per --batch objects (the Sender's batch is 20), each file
//     read from disk inside the timed part, as storescu reads them;
//  4. the daemon's path: a Sender forwarding the same objects from a durable
//     Spool, which records every delivery on disk, once with the profile's
//     default retention (24 h: delivered objects stay) and once with
//     retention 0 (delivered objects are deleted once deliveries pause);
//  5. prints, for each run, its time relative to the mean of the two storescu
//     runs that open and close its round (best and median over the rounds,
//     with a 95% interval of the median), and the best and median seconds.
// Before each run the page cache's dirty pages are flushed with `sync`.
// Every run goes to a fresh output folder of one `storescp +xa +B`, and
// the files it wrote are counted and their data sets compared with the source.
// endocap's runs go in turn in forward and reverse order. The first
// --warmup rounds run in full and are not counted: the daemon is a
// long-running process, and V8 compiles its hot functions over the first
// thousands of objects, while storescu is native code.
// Usage: npx tsc -p . && node bench/forwarding.mjs [--count 300] [--batch 20] [--rounds 11] [--warmup 2] [--received DIR] [--receiver-cpus LIST] [--keep]
// --received sets the parent folder of storescp's output (default /dev/shm
// where it exists, else the bench's temp folder on disk).
// --receiver-cpus runs storescp on those CPUs only (taskset's list syntax).
// Run the bench itself under `taskset -c` with the other CPUs, and the
// clients no longer take CPU time from the receiver.
// --batch sets the objects per association of the second storeObjects run, and
// the Sender's batch: the objects it takes from the spool at a time, while its
// association goes on as long as the spool has objects.
// The daemon's thread pool size, set before anything uses the pool.
import '../dist/cli/threadpool.js';
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '300' },
    batch: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '11' },
    warmup: { type: 'string', default: '2' },
    received: { type: 'string' },
    'receiver-cpus': { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const count = Number(values.count);
const batchSize = Number(values.batch);
const rounds = Number(values.rounds);
const warmupRounds = Number(values.warmup);

const { buildVlEndoscopicImage, VL_ENDOSCOPIC_IMAGE_STORAGE, JPEG_BASELINE_TRANSFER_SYNTAX } = await import(path.join(root, 'dist/dicom/vl-endoscopic.js'));
const { storeObjects } = await import(path.join(root, 'dist/pacs/store-scu.js'));
const { splitPart10 } = await import(path.join(root, 'dist/pacs/part10.js'));
const { Sender } = await import(path.join(root, 'dist/pacs/sender.js'));
const { Spool } = await import(path.join(root, 'dist/spool/spool.js'));
const { ObjectFiles } = await import(path.join(root, 'dist/spool/object-files.js'));
const { createLogger } = await import(path.join(root, 'dist/log.js'));

function say(line) {
  process.stderr.write(`bench: ${line}\n`);
}

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port) {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const open = await new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`storescp is not listening on port ${port}`);
}

/**
 * Flushes dirty pages to disk before a timed run. Filling a spool writes
 * 89 MB, and emptying the receiver's folder deletes as much. Left to the
 * kernel's writeback, that work would land inside the next timed run.
 */
async function settleDisk() {
  await run('sync');
}

async function makeObjects(work) {
  const jpegDirectory = path.join(work, 'jpeg');
  const objectDirectory = path.join(work, 'objects');
  await mkdir(jpegDirectory);
  await mkdir(objectDirectory);

  say(`encoding ${count} noisy 1080p JPEG frames with ffmpeg`);
  await run('ffmpeg', [
    '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=30,noise=alls=14:allf=t+u',
    '-frames:v', String(count), '-q:v', '4', '-pix_fmt', 'yuvj422p', path.join(jpegDirectory, 'frame-%04d.jpg'),
  ]);

  const now = new Date();
  const uidRoot = '1.2.826.0.1.3680043.10.1437.99';
  const station = {
    aeTitle: 'ENDOCAP', stationName: 'BENCH', institutionName: 'Bench', departmentName: 'Endoscopy', uidRoot,
    deviceSerialNumber: 'bench', softwareVersion: '0.0.0',
  };
  const study = { studyInstanceUid: `${uidRoot}.1`, studyId: '1', accessionNumber: '', studyDate: now, patientName: 'BENCH^ONLY', patientId: 'BENCH' };
  const series = { seriesInstanceUid: `${uidRoot}.2`, seriesNumber: 1, seriesDate: now };

  const paths = [];
  let bytes = 0;
  for (let index = 1; index <= count; index += 1) {
    const jpeg = await readFile(path.join(jpegDirectory, `frame-${String(index).padStart(4, '0')}.jpg`));
    const part10 = buildVlEndoscopicImage({
      jpeg, width: 1920, height: 1080, acquiredAt: now, sopInstanceUid: `${uidRoot}.3.${index}`,
      station, study, series, instanceNumber: index,
    });
    const file = path.join(objectDirectory, `still-${String(index).padStart(4, '0')}.dcm`);
    await writeFile(file, part10);
    paths.push(file);
    bytes += part10.length;
  }
  await rm(jpegDirectory, { recursive: true });
  return { paths, bytes };
}

/**
 * Checks that storescp wrote one file per object. With `exact`, each data set
 * must equal the sent one byte for byte; storescu re-encodes sequences, so its
 * runs are only counted.
 */
async function checkReceived(directory, sources, exact) {
  const names = await readdir(directory);
  if (names.length !== sources.length) throw new Error(`storescp wrote ${names.length} files, expected ${sources.length}`);
  for (const [index, source] of sources.entries()) {
    const uid = `1.2.826.0.1.3680043.10.1437.99.3.${index + 1}`;
    const name = names.find((entry) => entry.endsWith(uid));
    if (!name) throw new Error(`storescp wrote no file for ${uid}`);
    if (!exact) continue;
    const sent = splitPart10(await readFile(source)).dataset;
    const stored = splitPart10(await readFile(path.join(directory, name))).dataset;
    if (!sent.equals(stored)) throw new Error(`data set of ${uid} differs from what was sent`);
  }
}

/** Starts timing: wall time in seconds and the CPU time of this process in seconds (user + system). */
function startTimer() {
  const started = performance.now();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return { seconds: (performance.now() - started) / 1000, cpuSeconds: (used.user + used.system) / 1e6 };
  };
}

async function timeStorescu(port, objectDirectory) {
  const started = performance.now();
  await run('storescu', ['-xy', '-aec', 'STORESCP', '-aet', 'BENCH', '+sd', '127.0.0.1', String(port), objectDirectory], {
    env: { ...process.env, TCP_NODELAY: '1' },
    maxBuffer: 64 * 1024 * 1024,
  });
  // storescu's CPU time is in another process and is not counted.
  return { seconds: (performance.now() - started) / 1000 };
}

const destinationBase = {
  name: 'bench', host: '127.0.0.1', calledAeTitle: 'STORESCP',
  connectTimeoutMs: 5_000, associationTimeoutMs: 10_000, requestTimeoutMs: 30_000,
  retry: { initialMs: 100, maxMs: 1_000, multiplier: 2 },
};

function metadataFor(index) {
  return {
    id: `bench-${index}`, sopClassUid: VL_ENDOSCOPIC_IMAGE_STORAGE,
    sopInstanceUid: `1.2.826.0.1.3680043.10.1437.99.3.${index}`, transferSyntaxUid: JPEG_BASELINE_TRANSFER_SYNTAX,
  };
}

/**
 * storeObjects over associations of `perAssociation` objects, one after
 * another. Each file is read from disk when its turn comes, by the spool's
 * own reader and into reused buffers, as the Sender has storeObjects do, so
 * reading overlaps sending. The file sizes are taken before timing, as the
 * spool reads them from its records.
 */
async function timeStoreObjects(port, paths, perAssociation) {
  const log = createLogger('warn');
  const files = new ObjectFiles(path.dirname(paths[0]), log);
  const sizes = new Map(await Promise.all(paths.map(async (file) => [file, (await stat(file)).size])));
  const destination = { ...destinationBase, port };
  // The spool starts its read thread when it opens, before anything is sent.
  files.startReading();
  const stop = startTimer();
  for (let first = 0; first < paths.length; first += perAssociation) {
    const objects = paths.slice(first, first + perAssociation).map((file, offset) => {
      const id = path.basename(file, '.dcm');
      const bytes = sizes.get(file);
      return { ...metadataFor(first + offset + 1), bytes, read: (into) => files.read(id, into, bytes) };
    });
    const results = await storeObjects({ destination, callingAeTitle: 'BENCH', objects, log });
    const failed = results.filter((result) => result.outcome !== 'stored');
    if (failed.length > 0) throw new Error(`${failed.length} objects not stored: ${failed[0].reason}`);
  }
  const timing = stop();
  files.close();
  return timing;
}

/**
 * Times the daemon's path: a Sender taking batches of `batchSize` forwards the
 * objects from a durable Spool. The timing includes the spool's durable record
 * of each delivery. Filling the spool is not timed, nor, with retention 0, the
 * deletion of the delivered objects, which waits for deliveries to pause.
 */
async function timeSender(port, paths, work, retentionHours) {
  const log = createLogger('warn');
  const destination = { ...destinationBase, port };
  const directory = await mkdtemp(path.join(work, 'spool-'));
  const spool = new Spool({ directory, destinations: [{ name: destination.name, commitment: false }], log, retentionHours });
  await spool.open();
  for (const [offset, file] of paths.entries()) {
    const { sopClassUid, sopInstanceUid, transferSyntaxUid } = metadataFor(offset + 1);
    await spool.add(await readFile(file), { sopClassUid, sopInstanceUid, transferSyntaxUid });
  }
  await settleDisk();
  const sender = new Sender({ destination, callingAeTitle: 'BENCH', queue: spool, log, batchSize });
  let stored = 0;
  let failure;
  const done = new Promise((resolve) => {
    sender.on('objectStored', () => {
      stored += 1;
      if (stored === paths.length) resolve();
    });
    sender.on('storeFailed', (event) => {
      failure = event.reason;
      resolve();
    });
  });
  const stop = startTimer();
  sender.start();
  sender.wake();
  await done;
  const timing = stop();
  await sender.stop();
  await spool.close();
  await rm(directory, { recursive: true, force: true });
  if (failure) throw new Error(`Sender failed: ${failure}`);
  return timing;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * Distribution-free 95% interval of the median of `values`: the k-th
 * smallest and the k-th largest value, with k the largest count for which
 * the chance of fewer than k values below the median is at most 2.5%
 * (binomial, p = 1/2). Undefined with fewer than 6 values.
 */
function medianInterval(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  let below = 0;
  let k = 0;
  for (let count = 0; count < n; count += 1) {
    below += binomial(n, count) / 2 ** n;
    if (below > 0.025) break;
    k = count + 1;
  }
  return k === 0 ? undefined : [sorted[k - 1], sorted[n - k]];
}

function binomial(n, k) {
  let result = 1;
  for (let index = 1; index <= k; index += 1) result = (result * (n - k + index)) / index;
  return result;
}

/** CPUs this process may run on, as Linux lists them in /proc/self/status. */
async function allowedCpus() {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  return /^Cpus_allowed_list:\s*(.+)$/m.exec(status)?.[1] ?? 'unknown';
}

const round3 = (value) => Number(value.toFixed(3));
const round2 = (value) => Number(value.toFixed(2));

const work = await mkdtemp(path.join(os.tmpdir(), 'endocap-forwarding-'));
// storescp's folder is emptied before every run. On ext4 the inode allocator
// then passes over every inode deleted in the last minute, which took about a
// quarter of storescp's CPU time in a profile here, probably more as deletions add up.
// On tmpfs the receiver costs the same in every run, for every client.
const receivedParent = values.received ?? ((await stat('/dev/shm').catch(() => undefined))?.isDirectory() ? '/dev/shm' : undefined);
const receivedRoot = receivedParent === undefined ? work : await mkdtemp(path.join(receivedParent, 'endocap-forwarding-'));
const receivedDirectory = path.join(receivedRoot, 'received');
let storescp;
try {
  const { paths, bytes } = await makeObjects(work);
  const megabytes = bytes / 1e6;
  say(`${count} objects, ${megabytes.toFixed(1)} MB, ${(bytes / count / 1024).toFixed(0)} KiB each`);

  await mkdir(receivedDirectory);
  const port = await freePort();
  const storescpArgs = ['+xa', '+B', '-aet', 'STORESCP', '-od', receivedDirectory, String(port)];
  // With --receiver-cpus, storescp runs on those CPUs only (taskset), as a PACS on its own machine would.
  const receiverCpus = values['receiver-cpus'];
  const [command, args] = receiverCpus === undefined ? ['storescp', storescpArgs] : ['taskset', ['-c', receiverCpus, 'storescp', ...storescpArgs]];
  storescp = spawn(command, args, {
    stdio: 'ignore',
    env: { ...process.env, TCP_NODELAY: '1' },
  });
  await waitForPort(port);

  const runs = [
    { name: 'storescu, 1 association', exact: false, time: () => timeStorescu(port, path.join(work, 'objects')) },
    { name: 'endocap storeObjects, 1 association', exact: true, time: () => timeStoreObjects(port, paths, paths.length) },
    { name: `endocap storeObjects, ${batchSize} per association`, exact: true, time: () => timeStoreObjects(port, paths, batchSize) },
    { name: `endocap Sender + Spool, batches of ${batchSize}, retention 24 h`, exact: true, time: () => timeSender(port, paths, work, 24) },
    { name: `endocap Sender + Spool, batches of ${batchSize}, retention 0`, exact: true, time: () => timeSender(port, paths, work, 0) },
  ];
  const reference = runs[0];
  const samples = new Map(runs.map((entry) => [entry.name, { seconds: [], cpuSeconds: [], ratios: [] }]));
  const loads = [];
  say(`storescp writes to ${receivedDirectory}; ${warmupRounds} warm-up rounds, then ${rounds} counted`);
  for (let round = 1 - warmupRounds; round <= rounds; round += 1) {
    // storescu runs first and last in every round, and endocap's runs in
    // between go in forward order in odd rounds and in reverse in even ones,
    // so that a drift of the machine within a round reaches both sides alike.
    const between = round % 2 === 1 ? runs.slice(1) : runs.slice(1).reverse();
    const order = [reference, ...between, reference];
    const times = new Map(runs.map((entry) => [entry.name, []]));
    const counted = round >= 1;
    for (const entry of order) {
      await rm(receivedDirectory, { recursive: true, force: true });
      await mkdir(receivedDirectory);
      await settleDisk();
      const timing = await entry.time();
      await checkReceived(receivedDirectory, paths, entry.exact);
      times.get(entry.name).push(timing.seconds);
      if (!counted) continue;
      const sample = samples.get(entry.name);
      sample.seconds.push(timing.seconds);
      if (timing.cpuSeconds !== undefined) sample.cpuSeconds.push(timing.cpuSeconds);
    }
    const referenceSeconds = times.get(reference.name).reduce((sum, value) => sum + value, 0) / 2;
    const line = runs.map((entry) => {
      const seconds = times.get(entry.name).map((value) => value.toFixed(3)).join(' and ');
      const ratios = times.get(entry.name).map((value) => (value / referenceSeconds).toFixed(2)).join(', ');
      return `${entry.name} ${seconds} s (${ratios})`;
    });
    const label = counted ? `round ${round}` : `warm-up round ${round + warmupRounds} of ${warmupRounds}`;
    say(`${label}, load ${os.loadavg()[0].toFixed(1)}: ${line.join('; ')}`);
    if (!counted) continue;
    for (const entry of runs) {
      for (const seconds of times.get(entry.name)) samples.get(entry.name).ratios.push(seconds / referenceSeconds);
    }
    loads.push(os.loadavg()[0]);
  }

  const rows = runs.map((entry) => {
    const sample = samples.get(entry.name);
    const interval = medianInterval(sample.ratios);
    return {
      run: entry.name,
      'best s': round3(Math.min(...sample.seconds)),
      'median s': round3(median(sample.seconds)),
      'MB/s (best)': Number((megabytes / Math.min(...sample.seconds)).toFixed(1)),
      'ratio best': round2(Math.min(...sample.ratios)),
      'ratio median': round2(median(sample.ratios)),
      'median 95% interval': interval === undefined ? '-' : `${interval[0].toFixed(2)} to ${interval[1].toFixed(2)}`,
      'CPU s (median)': sample.cpuSeconds.length > 0 ? round3(median(sample.cpuSeconds)) : '-',
    };
  });
  console.log(`objects: ${count}, total ${megabytes.toFixed(1)} MB; ${rounds} rounds after ${warmupRounds} warm-up round(s); storescp writes to ${receivedParent ?? 'the temp folder'}; node ${process.version}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'})`);
  console.log(`CPUs: storescp ${values['receiver-cpus'] ?? 'any'}, this process and storescu ${await allowedCpus()}`);
  console.log(`1-minute load average during the rounds: ${Math.min(...loads).toFixed(1)} to ${Math.max(...loads).toFixed(1)}`);
  console.log('ratio: time of the run divided by the mean time of the two storescu runs of its round');
  console.table(rows);
} finally {
  storescp?.kill('SIGTERM');
  if (values.keep) say(`kept ${work}` + (receivedRoot === work ? '' : ` and ${receivedRoot}`));
  else await Promise.all([work, receivedRoot].map((folder) => rm(folder, { recursive: true, force: true })));
}
