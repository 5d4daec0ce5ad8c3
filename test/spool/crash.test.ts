import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { readObjectMetadata } from '../../src/dicom/object-metadata.js';
import { createLogger } from '../../src/log.js';
import { Spool } from '../../src/spool/spool.js';
import { typescriptChildArgs } from '../helpers/typescript-child.js';
import { makeObject, plain } from './fixtures/objects.js';

const ROUNDS = 8;
const childScript = fileURLToPath(new URL('./fixtures/crash-child.ts', import.meta.url));

const expectedHashes = new Map<string, string>();
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Hash of the object the child builds for `sopInstanceUid`. */
function expectedHash(sopInstanceUid: string): string {
  let hash = expectedHashes.get(sopInstanceUid);
  if (hash === undefined) {
    hash = sha256(makeObject(sopInstanceUid, 1_000, 3_000_000).part10);
    expectedHashes.set(sopInstanceUid, hash);
  }
  return hash;
}

interface RoundResult {
  added: Set<string>;
  /** Objects whose removal started, so they may or may not be on disk. */
  removing: Set<string>;
}

/** Runs the child until it is ready, lets it add objects for `runMs`, then kills it with SIGKILL. */
function runAndKill(directory: string, round: number, runMs: number): Promise<RoundResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...typescriptChildArgs, childScript, directory, String(round)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const result: RoundResult = { added: new Set(), removing: new Set() };
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
        const [word, uid] = line.split(' ');
        if (word === 'ready') timer = setTimeout(() => child.kill('SIGKILL'), runMs);
        else if (word === 'added' && uid !== undefined) result.added.add(uid);
        else if (word === 'removing' && uid !== undefined) result.removing.add(uid);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') resolve(result);
      else reject(new Error(`child exited with code ${code} before the kill: ${stderr}`));
    });
  });
}

t.test('spool survives SIGKILL at random moments', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-crash-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const objects = path.join(directory, 'objects');
  const added = new Set<string>();
  const removing = new Set<string>();
  let tempFilesSeen = 0;

  for (let round = 1; round <= ROUNDS; round += 1) {
    const runMs = Math.floor(Math.random() * 400);
    const result = await runAndKill(directory, round, runMs);
    for (const uid of result.added) added.add(uid);
    for (const uid of result.removing) removing.add(uid);
    const names = await readdir(objects);
    tempFilesSeen += names.filter((name) => name.endsWith('.tmp')).length;
    t.comment(`round ${round}: killed after ${runMs} ms, ${result.added.size} added, ${result.removing.size} removals started`);

    // Before the next round recovers anything, every object file must be byte for byte the object its UID describes.
    const objectFiles = names.filter((name) => name.endsWith('.dcm'));
    let incomplete = 0;
    for (const name of objectFiles) {
      const bytes = await readFile(path.join(objects, name));
      try {
        if (sha256(bytes) !== expectedHash(readObjectMetadata(bytes).sopInstanceUid)) incomplete += 1;
      } catch {
        // A file without readable File Meta Information counts as incomplete.
        incomplete += 1;
      }
    }
    t.equal(incomplete, 0, `round ${round}: all ${objectFiles.length} object files complete`);
  }

  const spool = new Spool({ directory, destinations: plain('a', 'b'), log: createLogger('silent') });
  const report = await spool.open();
  t.comment(`recovery: ${JSON.stringify(report)}; temp files seen between rounds: ${tempFilesSeen}`);
  t.same(report.unreadableObjects, [], 'no object file is partial');
  t.same((await readdir(objects)).filter((name) => name.endsWith('.tmp')), [], 'temp files removed');

  const listed = new Set(spool.list().map((entry) => entry.sopInstanceUid));
  const lost = [...added].filter((uid) => !removing.has(uid) && !listed.has(uid));
  t.same(lost, [], 'every acknowledged object that was not delivered is still spooled');
  for (const entry of spool.list()) {
    const bytes = await spool.read(entry.id);
    if (bytes.length !== entry.bytes) t.fail(`${entry.id} size differs from its state`);
    if (sha256(bytes) !== expectedHash(entry.sopInstanceUid)) t.fail(`${entry.id} content differs`);
  }
  t.ok(added.size > 0, `${added.size} objects were acknowledged in total`);
  await spool.close();
});
