import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/cli.js';
import { startOrthanc } from '../helpers/orthanc.js';
import { freePort } from '../helpers/ports.js';
import { writeTestProfile } from '../helpers/profile-file.js';
import { startStowServer } from './stow-server.js';

// Runs dist/: build first (npm run build).
t.test('echo checks STOW-RS destinations with QIDO-RS', async (t) => {
  const directory = await mkdtemp(path.join(tmpdir(), 'endocap-stow-echo-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  const orthanc = await startOrthanc({ dicomWeb: true });
  t.teardown(() => orthanc.stop());
  const locked = await startStowServer(() => ({ status: 401 }));
  t.teardown(() => locked.stop());
  const closedPort = await freePort();
  const tokenFile = path.join(directory, 'token');
  await writeFile(tokenFile, 'echo-secret-token\n');

  const web = (name: string, url: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ kind: 'stow-rs', name, url, connectTimeoutMs: 2_000, ...extra });
  const file = await writeTestProfile({
    directory,
    sections: {
      formatVersion: 2,
      destinations: [
        web('orthanc', `http://127.0.0.1:${orthanc.httpPort}/dicom-web/`),
        web('locked', locked.url, { auth: { kind: 'bearer', tokenFile } }),
        web('closed', `http://127.0.0.1:${closedPort}/dicom-web`),
        web('plain', `https://127.0.0.1:${orthanc.httpPort}/dicom-web`),
      ],
    },
  });

  const result = await runCli('echo', '--profile', file);

  t.equal(result.code, 1, 'a failed destination makes the exit code 1');
  const lines = result.stdout.trim().split('\n');
  t.equal(lines.length, 4, result.stdout);
  t.match(lines[0], /^destination orthanc \(http:\/\/127\.0\.0\.1:\d+\/dicom-web\/studies\?limit=1\): ok in \d+ ms$/);
  t.match(lines[1], /^destination locked .*: FAILED in \d+ ms: credentials rejected: server answered HTTP 401; check auth of destination locked$/);
  t.match(lines[2], /^destination closed .*: FAILED in \d+ ms: connection to 127\.0\.0\.1:\d+ refused \(ECONNREFUSED\)$/);
  t.match(lines[3], /^destination plain .*: FAILED in \d+ ms: TLS handshake with 127\.0\.0\.1:\d+ failed \(ERR_SSL_WRONG_VERSION_NUMBER\)$/, 'https to a plain HTTP server is a TLS failure on one line');
  t.equal(locked.requests[0]?.method, 'GET');
  t.equal(locked.requests[0]?.headers['authorization'], 'Bearer echo-secret-token', 'the token is sent');
  t.notOk(result.stdout.includes('echo-secret-token') || result.stderr.includes('echo-secret-token'), 'the token is not printed');
});
