import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFile, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const run = promisify(execFile);
const script = path.resolve(import.meta.dirname, '../../scripts/install.sh');

/**
 * Lists every entry under `root` as type, mode, owner, group, path and, for files, a SHA-256 of
 * the content. Files under node_modules are listed with their size only, since hashing a few
 * hundred MB twice would take most of the test's time.
 */
async function listing(root: string): Promise<string[]> {
  const lines: string[] = [];
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    const file = path.join(entry.parentPath, entry.name);
    const info = await stat(file).catch(() => undefined);
    const kind = entry.isSymbolicLink() ? 'l' : entry.isDirectory() ? 'd' : 'f';
    let digest = '-';
    if (kind === 'f' && info) digest = file.includes(`${path.sep}node_modules${path.sep}`) ? `${info.size} bytes` : createHash('sha256').update(await readFile(file)).digest('hex');
    lines.push(`${kind} ${((info?.mode ?? 0) & 0o7777).toString(8)} ${info?.uid ?? '-'} ${info?.gid ?? '-'} ${path.relative(root, file)} ${digest}`);
  }
  return lines.sort();
}

async function entry(file: string): Promise<{ mode: string; uid: number; gid: number }> {
  const info = await stat(file);
  return { mode: (info.mode & 0o7777).toString(8), uid: info.uid, gid: info.gid };
}

t.test('install script run twice gives the same tree', async (t) => {
  const root = await mkdtemp(path.join(os.tmpdir(), 'endocap-install-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));

  const { stdout: firstOutput } = await run(script, ['--root', root], { maxBuffer: 1 << 20 });
  t.match(firstOutput, /edit \/etc\/endocap\/profile\.yaml/, 'the first run asks to edit the new profile');
  // An operator's edit must survive the second run.
  const profile = path.join(root, 'etc/endocap/profile.yaml');
  await appendFile(profile, '# edited on the box\n');
  const first = await listing(root);

  const { stdout: secondOutput } = await run(script, ['--root', root], { maxBuffer: 1 << 20 });
  const second = await listing(root);
  t.same(second, first, 'modes, owners and checksums are unchanged by the second run');
  t.match(await readFile(profile, 'utf8'), /# edited on the box\n$/, 'the edited profile is kept');
  t.notMatch(secondOutput, /edit \/etc\/endocap\/profile\.yaml/, 'no hint to edit an existing profile');

  const account = (await readFile(path.join(root, 'etc/passwd'), 'utf8')).split('\n').filter((line) => line.startsWith('endocap:'));
  t.equal(account.length, 1, 'the endocap user is added once');
  const [, , uid, gid, , home, shell] = (account[0] ?? '').split(':');
  t.equal(home, '/var/lib/endocap');
  t.equal(shell, '/usr/sbin/nologin');

  for (const folder of ['var/lib/endocap', 'var/lib/endocap/spool', 'var/lib/endocap/state']) {
    t.same(await entry(path.join(root, folder)), { mode: '750', uid: Number(uid), gid: Number(gid) }, `${folder} belongs to endocap, 0750`);
  }
  t.same(await entry(profile), { mode: '640', uid: 0, gid: Number(gid) }, 'the profile is readable by the endocap group only');
  for (const [installed, source] of [
    ['etc/systemd/system/endocap.service', 'systemd/endocap.service'],
    ['etc/udev/rules.d/99-endocap.rules', 'systemd/99-endocap.rules'],
    ['etc/tmpfiles.d/endocap.conf', 'systemd/endocap.tmpfiles.conf'],
  ] as const) {
    const expected = await readFile(path.resolve(import.meta.dirname, '../..', source));
    t.ok((await readFile(path.join(root, installed))).equals(expected), `${installed} is a copy of ${source}`);
  }
  t.ok((await stat(path.join(root, 'opt/endocap/dist/cli/main.js'))).isFile(), 'the program is installed');
});

t.test('install script rejects an unknown option', async (t) => {
  const failure = await run(script, ['--prefix', '/tmp']).then(
    () => undefined,
    (error: unknown) => error as { code?: number; stderr?: string },
  );
  t.equal(failure?.code, 64, 'exit code 64 (EX_USAGE)');
  t.match(failure?.stderr ?? '', /usage: install\.sh \[--root DIR\]/);
});
