import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/cli.js';
import { writeTestProfile } from '../helpers/profile-file.js';

/** Width and height of a JPEG as djpeg (libjpeg-turbo-progs) reads them. */
function jpegSize(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('djpeg', ['-pnm', file], { encoding: 'latin1', maxBuffer: 16 * 1024 * 1024 }, (error, stdout) => {
      if (error !== null) {
        reject(error);
        return;
      }
      // PNM header: magic, then "width height" on the next line.
      resolve(stdout.split('\n')[1] ?? '');
    });
  });
}

t.test('video test reports source and snapshot', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-video-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const file = await writeTestProfile({ directory });
  const snapshot = path.join(directory, 'snapshot.jpg');

  const result = await runCli('video', 'test', '--seconds', '2', '--snapshot', snapshot, '--profile', file);
  t.equal(result.code, 0, result.stderr);
  t.match(result.stdout, /^video: 640x480 \S*, [\d.]+ fps measured, \d+ frames decoded, \d+ dropped$/m);
  t.match(result.stdout, /^snapshot: 640x480 JPEG written to /m);
  t.equal(await jpegSize(snapshot), '640 480');
});

t.test('video test exits 1 without a signal', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-video-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const file = await writeTestProfile({ directory, graph: 'this-filter-does-not-exist' });
  const result = await runCli('video', 'test', '--seconds', '1', '--profile', file);
  t.equal(result.code, 1);
  t.match(result.stdout, /^video: NO SIGNAL after 1 s/);
});

t.test('video test help and bad arguments', async (t) => {
  const help = await runCli('video', 'test', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /--seconds N[\s\S]*--snapshot FILE[\s\S]*--profile FILE/);
  t.equal((await runCli('video', 'test', '--seconds', 'zero')).code, 64);
  t.equal((await runCli('video', 'check')).code, 64);
});
