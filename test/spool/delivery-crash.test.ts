import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { Spool } from '../../src/spool/spool.js';
import { typescriptChildArgs } from '../helpers/typescript-child.js';
import { UID_ROOT, makeObject, plain } from './fixtures/objects.js';

// SIGKILL ends the process but keeps the page cache, so this checks the
// journal's write order and recovery, not what a power cut does to fdatasync.
const ROUNDS = 6;
/** Objects added before each round, so that every kill lands while results are recorded. */
const OBJECTS_PER_ROUND = 60;
const childScript = fileURLToPath(new URL('./fixtures/delivery-crash-child.ts', import.meta.url));
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

interface Announced {
  storing: Set<string>;
  stored: Set<string>;
}

/** Runs the child until it is ready, lets it record results for `runMs`, then kills it with SIGKILL. */
function runAndKill(directory: string, retentionHours: number, runMs: number, announced: Announced): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...typescriptChildArgs, childScript, directory, String(retentionHours)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buffered = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const [word, uid, destination] = line.split(' ');
        const key = `${uid} ${destination}`;
        if (word === 'ready') timer = setTimeout(() => child.kill('SIGKILL'), runMs);
        else if (word === 'storing') announced.storing.add(key);
        else if (word === 'stored') announced.stored.add(key);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`child exited with code ${code} before the kill: ${stderr}`));
    });
  });
}

async function addObjects(directory: string, retentionHours: number, uids: string[]): Promise<void> {
  const spool = new Spool({ directory, destinations: plain('a', 'b'), log: createLogger('silent'), retentionHours });
  await spool.open();
  for (const uid of uids) {
    const { part10, meta } = makeObject(uid);
    await spool.add(part10, meta);
  }
  await spool.close();
}

for (const retentionHours of [1, 0]) {
  t.test(`delivery records survive SIGKILL, retention ${retentionHours} h`, async (t) => {
    const directory = await mkdtemp(path.join(tmpdir(), 'endocap-delivery-crash-'));
    t.teardown(() => rm(directory, { recursive: true, force: true }));
    const announced: Announced = { storing: new Set(), stored: new Set() };
    const uids: string[] = [];
    let interrupted = 0;

    for (let round = 1; round <= ROUNDS; round += 1) {
      const added = Array.from({ length: OBJECTS_PER_ROUND }, (_, index) => `${UID_ROOT}.31.${round}.${index + 1}`);
      await addObjects(directory, retentionHours, added);
      uids.push(...added);
      const runMs = Math.floor(Math.random() * 40);
      const storedBefore = announced.stored.size;
      await runAndKill(directory, retentionHours, runMs, announced);

      const spool = new Spool({ directory, destinations: plain('a', 'b'), log: createLogger('silent'), retentionHours });
      const report = await spool.open();
      const byUid = new Map(spool.list().map((entry) => [entry.sopInstanceUid, entry]));
      const problems: string[] = [];
      for (const uid of uids) {
        const entry = byUid.get(uid);
        for (const destination of ['a', 'b']) {
          const key = `${uid} ${destination}`;
          const state = entry?.deliveries[destination]?.state;
          if (state === 'stored' && !announced.storing.has(key)) problems.push(`${key} recorded as stored but never stored`);
          if (state === 'sending') problems.push(`${key} still sending after recovery`);
          if (entry !== undefined && announced.stored.has(key) && state !== 'stored') problems.push(`${key} acknowledged as stored but ${state}`);
        }
        if (entry === undefined && !(announced.storing.has(`${uid} a`) && announced.storing.has(`${uid} b`))) problems.push(`${uid} lost`);
        if (entry !== undefined && sha256(await spool.read(entry.id)) !== sha256(makeObject(uid).part10)) problems.push(`${uid} content differs`);
      }
      await spool.close();
      // A round that ends before every new object is stored at both destinations was killed mid-work.
      if (announced.stored.size - storedBefore < 2 * OBJECTS_PER_ROUND) interrupted += 1;
      t.same(problems, [], `round ${round}: killed after ${runMs} ms, ${announced.stored.size} stores acknowledged, ${byUid.size} objects left`);
      t.same(report.unreadableObjects, [], `round ${round}: no unreadable object`);
    }
    t.ok(announced.stored.size > 0, `${announced.stored.size} stores were acknowledged in total`);
    t.ok(interrupted > 0, `${interrupted} of ${ROUNDS} kills landed while results were being recorded`);
  });
}
