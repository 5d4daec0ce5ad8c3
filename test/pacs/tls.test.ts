import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import t, { type Test } from 'tap';
import { splitPart10 } from '../../src/pacs/part10.js';
import { echo, storeObjects, type StoreObject, type StoreResult } from '../../src/pacs/store-scu.js';
import { destinationSchema, type DestinationConfig } from '../../src/profile/schema.js';
import { makeCa, makeSignedCertificate, type CertificateFiles } from '../helpers/certificates.js';
import { freePort } from '../helpers/ports.js';
import { destinationFor, makeJpegObject, memoryLogger, patientMarkers, storeObjectFromFile } from './fixtures.js';
import { startSilentServer, startStorescp, type RunningPeer } from './peers.js';

const callingAeTitle = 'ENDOCAP';

let workDirectory = '';
let ca: CertificateFiles;
let otherCa: CertificateFiles;
let server: CertificateFiles;
let client: CertificateFiles;
let strangerClient: CertificateFiles;
let still: StoreObject;

t.before(async () => {
  workDirectory = await mkdtemp(join(tmpdir(), 'endocap-tls-'));
  ca = await makeCa(workDirectory, 'endocap-test-ca');
  otherCa = await makeCa(workDirectory, 'unrelated-ca');
  server = await makeSignedCertificate(workDirectory, 'pacs', ca, { usage: 'serverAuth', subjectAltName: 'DNS:pacs.test,IP:127.0.0.1' });
  client = await makeSignedCertificate(workDirectory, 'box', ca, { usage: 'clientAuth' });
  strangerClient = await makeSignedCertificate(workDirectory, 'stranger', otherCa, { usage: 'clientAuth' });
  still = await storeObjectFromFile('obj-tls', await makeJpegObject(workDirectory, 'still'));
});

t.teardown(() => rm(workDirectory, { recursive: true, force: true }));

/**
 * Starts storescp with TLS. By default (DCMTK's --require-peer-cert) it
 * requires a client certificate signed by a CA in `trustedCa`.
 */
async function startTlsStorescp(t: Test, name: string, trustedCa: CertificateFiles): Promise<{ peer: RunningPeer; directory: string }> {
  const directory = join(workDirectory, name);
  await mkdir(directory);
  const port = await freePort();
  const peer = await startStorescp({
    port,
    aeTitle: 'STORESCP',
    outputDirectory: directory,
    args: ['+xa', '+B', '+tls', server.keyFile, server.certFile, '+cf', trustedCa.certFile],
  });
  t.teardown(() => peer.stop());
  return { peer, directory };
}

function tlsDestination(port: number, tls: Partial<NonNullable<DestinationConfig['tls']>>): DestinationConfig {
  return destinationFor(port, { tls: { enabled: true, rejectUnauthorized: true, ...tls } });
}

async function store(destination: DestinationConfig, onSocket?: (socket: Socket) => void): Promise<StoreResult> {
  const { log, lines } = memoryLogger();
  const [result] = await storeObjects({ destination, callingAeTitle, objects: [still], log, onSocket });
  if (!result) throw new Error('storeObjects returned no result');
  for (const marker of patientMarkers) {
    if (lines().includes(marker)) throw new Error(`log contains patient data ${marker}`);
  }
  return result;
}

t.test('tls stores with a client certificate', async (t) => {
  const { peer, directory } = await startTlsStorescp(t, 'stored', ca);
  const sockets: TLSSocket[] = [];
  const destination = tlsDestination(peer.port, { caFile: ca.certFile, certFile: client.certFile, keyFile: client.keyFile });

  const result = await store(destination, (socket) => sockets.push(socket as TLSSocket));

  t.equal(result.outcome, 'stored', result.reason);
  t.equal(sockets.length, 1);
  t.equal(sockets[0]?.encrypted, true, 'the connection was TLS');
  t.equal(sockets[0]?.authorized, true, 'the PACS certificate was verified');
  const files = await readdir(directory);
  t.equal(files.length, 1, 'storescp wrote the object');
  const stored = splitPart10(await readFile(join(directory, files[0] ?? '')));
  t.ok(stored.dataset.equals(splitPart10(still.part10).dataset), 'data set bytes equal what was sent');

  const echoResult = await echo({ destination, callingAeTitle, log: memoryLogger().log });
  t.equal(echoResult.ok, true, 'C-ECHO over TLS succeeds');
});

t.test('tls checks the server name', async (t) => {
  const { peer } = await startTlsStorescp(t, 'names', ca);
  const files = { caFile: ca.certFile, certFile: client.certFile, keyFile: client.keyFile };

  const matching = await store(tlsDestination(peer.port, { ...files, serverName: 'pacs.test' }));
  t.equal(matching.outcome, 'stored', 'a name in the certificate is accepted');

  const mismatch = await store(tlsDestination(peer.port, { ...files, serverName: 'other.test' }));
  t.equal(mismatch.outcome, 'transient');
  t.equal(mismatch.reason, `TLS certificate of 127.0.0.1:${peer.port} does not match the name other.test: set tls.serverName to a name in the certificate`);
  t.equal(mismatch.associated, false);
});

t.test('tls rejects a certificate from another CA', async (t) => {
  const { peer, directory } = await startTlsStorescp(t, 'wrong-ca', ca);
  const result = await store(tlsDestination(peer.port, { caFile: otherCa.certFile, certFile: client.certFile, keyFile: client.keyFile }));
  t.equal(result.outcome, 'transient');
  t.match(result.reason, new RegExp(`^TLS certificate of 127\\.0\\.0\\.1:${peer.port} is not trusted \\([A-Z_]+\\): check tls\\.caFile$`));
  t.same(await readdir(directory), [], 'nothing reached storescp');
});

t.test('tls reports a missing client certificate', async (t) => {
  const { peer } = await startTlsStorescp(t, 'no-client-cert', ca);
  const result = await store(tlsDestination(peer.port, { caFile: ca.certFile }));
  t.equal(result.outcome, 'transient');
  t.match(result.reason, new RegExp(`^TLS handshake with 127\\.0\\.0\\.1:${peer.port} failed: the peer requires a client certificate: set tls\\.certFile and tls\\.keyFile \\(ERR_SSL_[A-Z0-9_]+\\)$`));
});

t.test('tls reports a client certificate the server does not trust', async (t) => {
  const { peer } = await startTlsStorescp(t, 'stranger', ca);
  const result = await store(tlsDestination(peer.port, { caFile: ca.certFile, certFile: strangerClient.certFile, keyFile: strangerClient.keyFile }));
  t.equal(result.outcome, 'transient');
  t.match(result.reason, new RegExp(`^TLS handshake with 127\\.0\\.0\\.1:${peer.port} failed: the peer rejected the client certificate in tls\\.certFile \\(ERR_SSL_[A-Z0-9_]+\\)$`));
});

t.test('tls handshake timeout', async (t) => {
  // A plain TCP server accepts the connection and never responds to the ClientHello.
  const silent = await startSilentServer();
  t.teardown(() => silent.stop());
  const destination = { ...tlsDestination(silent.port, { caFile: ca.certFile }), connectTimeoutMs: 800 };
  const result = await store(destination);
  t.same(result, { id: 'obj-tls', outcome: 'transient', reason: `TLS handshake with 127.0.0.1:${silent.port} timed out after 800 ms`, associated: false });
});

t.test('tls unreadable file is transient', async (t) => {
  const missing = join(workDirectory, 'missing-ca.pem');
  const result = await store(tlsDestination(await freePort(), { caFile: missing }));
  t.same(result, { id: 'obj-tls', outcome: 'transient', reason: `TLS caFile ${missing} could not be read (ENOENT)`, associated: false });
});

t.test('tls verification off accepts any certificate', async (t) => {
  const { peer } = await startTlsStorescp(t, 'unverified', ca);
  const result = await store(tlsDestination(peer.port, { caFile: otherCa.certFile, certFile: client.certFile, keyFile: client.keyFile, rejectUnauthorized: false }));
  t.equal(result.outcome, 'stored', 'rejectUnauthorized: false skips the check, for tests only');
});

t.test('tls profile settings', async (t) => {
  const base = { kind: 'dicom', name: 'pacs', host: 'pacs.example', port: 2762, calledAeTitle: 'PACS' };
  const parsed = destinationSchema.parse({ ...base, tls: { caFile: '/etc/endocap/ca.pem' } });
  t.same(parsed.tls, { enabled: true, caFile: '/etc/endocap/ca.pem', rejectUnauthorized: true }, 'on, and verifying, by default');
  t.equal(destinationSchema.parse(base).tls, undefined, 'plain TCP without a tls section');

  const halfPair = destinationSchema.safeParse({ ...base, tls: { certFile: '/etc/endocap/box.pem' } });
  t.equal(halfPair.success, false);
  t.same(halfPair.error?.issues.map((issue) => [issue.path.join('.'), issue.message]), [['tls.keyFile', 'certFile and keyFile given together']]);
  const unknownKey = destinationSchema.safeParse({ ...base, tls: { verify: false } });
  t.equal(unknownKey.success, false, 'unknown keys are rejected');
});
