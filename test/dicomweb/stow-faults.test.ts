import { createReadStream } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import t, { type Test } from 'tap';
import { StowRsClient, type FaultChangedEvent } from '../../src/dicomweb/stow-rs.js';
import { Sender, type LinkChangedEvent, type ObjectStoredEvent, type StoreFailedEvent } from '../../src/pacs/sender.js';
import type { LazyStoreObject, StoreResult } from '../../src/pacs/store-scu.js';
import type { StowRsDestinationConfig } from '../../src/profile/schema.js';
import { MemoryQueue } from '../pacs/fixtures.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { memoryLogger, patientMarkers, stillObject, stowDestination, type TestObject } from './fixtures.js';
import { startStowServer, stowResponse, type StowServer } from './stow-server.js';

const directory = await mkdtemp(join(tmpdir(), 'endocap-stow-faults-'));
t.teardown(() => rm(directory, { recursive: true, force: true }));

const stills: TestObject[] = [];
for (let index = 1; index <= 3; index += 1) stills.push(await stillObject(join(directory, 'objects'), index));

function lazy(object: TestObject, id: string): LazyStoreObject {
  return { id, ...object.meta, read: async () => object.part10 };
}

function still(index: number): TestObject {
  const found = stills[index];
  if (!found) throw new Error(`no still ${index}`);
  return found;
}

async function server(t: Test, respond: Parameters<typeof startStowServer>[0]): Promise<StowServer> {
  const started = await startStowServer(respond);
  t.teardown(() => started.stop());
  return started;
}

function client(destination: StowRsDestinationConfig, options: { credentialRetryMs?: number } = {}): { client: StowRsClient; faults: FaultChangedEvent[]; lines: () => string } {
  const { log, lines } = memoryLogger();
  const created = new StowRsClient({ destination, log, ...options });
  const faults: FaultChangedEvent[] = [];
  created.on('faultChanged', (event) => faults.push(event));
  return { client: created, faults, lines };
}

function transfer(stow: StowRsClient, objects: LazyStoreObject[]): Promise<StoreResult[]> {
  return stow.transfer(objects, { signal: new AbortController().signal, onResult: () => undefined });
}

function outcomes(results: StoreResult[]): Array<[string, string]> {
  return results.map((result) => [result.id, result.outcome]);
}

t.test('request is multipart/related of the files as they are', async (t) => {
  const stow = await server(t, () => ({ status: 200 }));
  const { client: web } = client(stowDestination(stow.url));

  const results = await transfer(web, [lazy(still(0), 'a'), lazy(still(1), 'b')]);

  t.same(outcomes(results), [['a', 'stored'], ['b', 'stored']]);
  t.equal(stow.requests.length, 1, 'one request for both stills');
  const request = stow.requests[0];
  t.equal(request?.method, 'POST');
  t.equal(request?.url, '/dicom-web/studies', 'posted to <url>/studies');
  t.match(request?.headers['content-type'], /^multipart\/related; type="application\/dicom"; boundary=[0-9a-z-]{32,}$/);
  t.equal(request?.headers['accept'], 'application/dicom+json');
  t.equal(request?.headers['authorization'], undefined, 'no Authorization header without auth');
  t.equal(request?.parts.length, 2);
  t.same(request?.parts.map((part) => part.contentType), ['application/dicom', 'application/dicom']);
  t.ok(request?.parts[0]?.body.equals(still(0).part10), 'first part is the first file byte for byte');
  t.ok(request?.parts[1]?.body.equals(still(1).part10), 'second part is the second file byte for byte');
});

t.test('202 maps FailedSOPSequence reasons per object', async (t) => {
  const stow = await server(t, () => ({
    status: 202,
    json: stowResponse(
      [{ uid: still(0).meta.sopInstanceUid, warning: 0xb000 }],
      [
        { uid: still(1).meta.sopInstanceUid, reason: 0xa700 },
        { uid: still(2).meta.sopInstanceUid, reason: 0xc000 },
      ],
    ),
  }));
  const { client: web } = client(stowDestination(stow.url));

  const results = await transfer(web, [lazy(still(0), 'a'), lazy(still(1), 'b'), lazy(still(2), 'c')]);

  t.same(outcomes(results), [['a', 'warning'], ['b', 'transient'], ['c', 'permanent']]);
  t.equal(results[0]?.status, 0xb000, 'warning reason kept as status');
  t.equal(results[0]?.reason, 'stored with warning 0xB000 (coercion of data elements) (STOW-RS HTTP 202)');
  t.equal(results[1]?.reason, 'server out of resources (status 0xA700) (STOW-RS HTTP 202)');
  t.equal(results[2]?.status, 0xc000);
  t.equal(results[2]?.reason, 'server rejected the object: cannot understand (status 0xC000) (STOW-RS HTTP 202)');
  t.ok(results.every((result) => result.associated === true), 'the server was reached');
});

t.test('202 with duplicate reason counts as stored', async (t) => {
  const stow = await server(t, () => ({ status: 202, json: [stowResponse([], [{ uid: still(0).meta.sopInstanceUid, reason: 0x0111 }])] }));
  const { client: web } = client(stowDestination(stow.url));

  const results = await transfer(web, [lazy(still(0), 'a'), lazy(still(1), 'b')]);

  t.equal(results[0]?.outcome, 'warning', 'duplicate SOP instance counts as stored');
  t.equal(results[1]?.outcome, 'transient', 'an object the 202 response does not name is tried again');
  t.equal(results[1]?.reason, 'server answered HTTP 202 (some instances failed) but the response does not name this object');
});

t.test('409 without reasons sends each object alone', async (t) => {
  const rejected = still(1).meta.sopInstanceUid;
  const stow = await server(t, (request) => {
    const uids = request.parts.map((part) => stills.find((object) => object.part10.equals(part.body))?.meta.sopInstanceUid);
    return { status: uids.includes(rejected) ? 409 : 200 };
  });
  const { client: web } = client(stowDestination(stow.url));

  const results = await transfer(web, [lazy(still(0), 'a'), lazy(still(1), 'b')]);

  t.same(outcomes(results), [['a', 'stored'], ['b', 'permanent']]);
  t.equal(results[1]?.reason, 'server rejected the object: HTTP 409 (conflict)');
  t.same(stow.requests.map((request) => request.parts.length), [2, 1, 1], 'both together, then each alone');
});

t.test('409 with a failure reason names the object', async (t) => {
  const stow = await server(t, () => ({ status: 409, json: stowResponse([], [{ uid: still(0).meta.sopInstanceUid, reason: 0x0122 }]) }));
  const { client: web } = client(stowDestination(stow.url));

  const results = await transfer(web, [lazy(still(0), 'a'), lazy(still(1), 'b')]);

  t.same(outcomes(results), [['a', 'permanent'], ['b', 'transient']]);
  t.equal(results[0]?.reason, 'server rejected the object: SOP class not supported (status 0x0122) (STOW-RS HTTP 409)');
  t.equal(stow.requests.length, 1, 'no second request while the server named the culprit');
});

t.test('413 sets the object aside and raises a configuration fault', async (t) => {
  const stow = await server(t, (request) => ({ status: request.parts.length > 0 && stow.requests.length <= 1 ? 413 : 200 }));
  const { client: web, faults } = client(stowDestination(stow.url));

  const results = await transfer(web, [lazy(still(0), 'a')]);

  t.same(outcomes(results), [['a', 'permanent']]);
  t.match(results[0]?.reason, /^server answered HTTP 413 \(payload too large\) to a request of \d+ bytes: raise the server's request size limit, or set maxObjectBytes of destination web below it/);
  t.equal(faults.length, 1, 'one fault raised');
  t.equal(faults[0]?.kind, 'configuration');
  t.equal(faults[0]?.active, true);

  const later = await transfer(web, [lazy(still(1), 'b')]);
  t.same(outcomes(later), [['b', 'stored']]);
  t.same(faults.map((fault) => [fault.kind, fault.active]), [['configuration', true], ['configuration', false]], 'a later success clears it');
  t.equal(stow.requests.length, 2, 'no retries of the refused object');
});

t.test('413 after Expect: 100-continue leaves a large body unsent', async (t) => {
  const largeFile = join(directory, 'large.bin');
  await writeFile(largeFile, Buffer.alloc(3 * 1024 * 1024, 7));
  const stow = await server(t, () => ({ status: 200 }));
  stow.onExpect = () => ({ status: 413 });
  const { client: web } = client(stowDestination(stow.url));
  let bytesRead = 0;
  const object: LazyStoreObject = {
    id: 'big',
    ...still(0).meta,
    read: () => Promise.reject(new Error('the file must be streamed, not read whole')),
    open: async () => {
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytesRead += chunk.length;
          callback(null, chunk);
        },
      });
      return { bytes: 3 * 1024 * 1024, stream: createReadStream(largeFile).pipe(counter) };
    },
  };

  const results = await transfer(web, [object]);

  t.same(outcomes(results), [['big', 'permanent']]);
  t.equal(stow.rejectedEarly.length, 1, 'the server rejected it from the headers');
  t.equal(stow.rejectedEarly[0]?.['expect'], '100-continue');
  t.equal(stow.requests.length, 0, 'no body reached the server');
  t.ok(bytesRead < 3 * 1024 * 1024, `the file was not read to the end (${bytesRead} bytes read)`);
});

t.test('401 holds off until the token file changes', async (t) => {
  const tokenFile = join(directory, 'token');
  await writeFile(tokenFile, 'first-token-ABC\n');
  const stow = await server(t, (request) => ({ status: request.headers['authorization'] === 'Bearer second-token-XYZ' ? 200 : 401 }));
  const { client: web, faults, lines } = client(stowDestination(stow.url, { auth: { kind: 'bearer', tokenFile } }), { credentialRetryMs: 600_000 });

  const first = await transfer(web, [lazy(still(0), 'a'), lazy(still(1), 'b')]);
  t.same(outcomes(first), [['a', 'transient'], ['b', 'transient']]);
  t.equal(first[0]?.reason, 'credentials rejected: server answered HTTP 401 (unauthorized); check the credential file of destination web');
  t.same(faults.map((fault) => [fault.kind, fault.active]), [['credentials', true]]);
  t.equal(stow.requests[0]?.headers['authorization'], 'Bearer first-token-ABC');

  const held = await transfer(web, [lazy(still(0), 'a')]);
  t.same(outcomes(held), [['a', 'transient']]);
  t.match(held[0]?.reason, /^credentials rejected by the server; tried again unchanged after \d{4}-/);
  t.equal(held[0]?.associated, undefined, 'the link state is left alone while holding off');
  t.equal(stow.requests.length, 1, 'the same credentials are not sent again');

  await writeFile(tokenFile, 'second-token-XYZ');
  const after = await transfer(web, [lazy(still(0), 'a')]);
  t.same(outcomes(after), [['a', 'stored']]);
  t.equal(stow.requests.length, 2);
  t.same(faults.map((fault) => [fault.kind, fault.active]), [['credentials', true], ['credentials', false]], 'success clears the fault');

  for (const secret of ['first-token-ABC', 'second-token-XYZ', 'Bearer', ...patientMarkers]) t.notOk(lines().includes(secret), `log does not contain ${secret}`);
});

t.test('403 with basic credentials from a YAML file', async (t) => {
  const credentialsFile = join(directory, 'credentials.yaml');
  await writeFile(credentialsFile, 'username: endocap\npassword: "s3cret:pass"\n');
  const expected = `Basic ${Buffer.from('endocap:s3cret:pass').toString('base64')}`;
  const stow = await server(t, (request) => ({ status: request.headers['authorization'] === expected ? 200 : 403 }));
  const { client: web, lines } = client(stowDestination(stow.url, { auth: { kind: 'basic', credentialsFile } }));

  t.same(outcomes(await transfer(web, [lazy(still(0), 'a')])), [['a', 'stored']], 'the right header is accepted');
  await writeFile(credentialsFile, 'username: endocap\npassword: wrong\n');
  const rejected = await transfer(web, [lazy(still(1), 'b')]);
  t.same(outcomes(rejected), [['b', 'transient']]);
  t.match(rejected[0]?.reason, /HTTP 403 \(forbidden\)/);
  t.notOk(lines().includes('s3cret'), 'log has no password');
});

t.test('unreadable credential file fails without contacting the server', async (t) => {
  const stow = await server(t, () => ({ status: 200 }));
  const tokenFile = join(directory, 'missing-token');
  const { client: web, faults } = client(stowDestination(stow.url, { auth: { kind: 'bearer', tokenFile } }));

  const results = await transfer(web, [lazy(still(0), 'a')]);

  t.same(outcomes(results), [['a', 'transient']]);
  t.equal(results[0]?.reason, `auth.tokenFile ${tokenFile} could not be read (ENOENT)`);
  t.equal(faults[0]?.kind, 'credentials');
  t.equal(stow.requests.length, 0);
});

t.test('503 then 200 through the sender', async (t) => {
  const stow = await server(t, (_request, index) => ({ status: index < 2 ? 503 : 200 }));
  const destination = stowDestination(stow.url, { retry: { initialMs: 50, maxMs: 200, multiplier: 2 } });
  const { client: web } = client(destination);
  const queue = new MemoryQueue();
  queue.add({ id: 'a', ...still(0).meta, part10: still(0).part10 }, ['web']);
  const { log } = memoryLogger();
  const sender = new Sender({ destination, transfer: web.transfer, endpoint: web.endpoint, queue, log });
  const failures: StoreFailedEvent[] = [];
  const stored: ObjectStoredEvent[] = [];
  const links: LinkChangedEvent[] = [];
  sender.on('storeFailed', (event) => failures.push(event));
  sender.on('objectStored', (event) => stored.push(event));
  sender.on('linkChanged', (event) => links.push(event));
  t.teardown(() => sender.stop());
  sender.start();

  await waitFor(() => stored.length === 1, 10_000, 'the object to be stored');
  t.equal(failures.length, 2, 'two failed attempts');
  t.ok(failures.every((failure) => failure.willRetry), 'both retried');
  t.equal(failures[0]?.reason, 'server answered HTTP 503: service unavailable');
  t.same(links.map((link) => link.up), [false, true], 'link down on 503, up once stored');
  t.equal(queue.state('a', 'web'), 'stored');
});

t.test('stalled server times out as transient', async (t) => {
  const stow = await server(t, () => undefined);
  const { client: web } = client(stowDestination(stow.url, { requestTimeoutMs: 300 }));

  const results = await transfer(web, [lazy(still(0), 'a'), lazy(still(1), 'b')]);

  t.same(outcomes(results), [['a', 'transient'], ['b', 'transient']]);
  t.match(results[0]?.reason, /^request to 127\.0\.0\.1:\d+ made no progress for 300 ms$/);
  t.equal(results[0]?.associated, true, 'the connection was open');
});

t.test('refused connection is transient and not associated', async (t) => {
  const port = await freePort();
  const { client: web } = client(stowDestination(`http://127.0.0.1:${port}/dicom-web`));

  const results = await transfer(web, [lazy(still(0), 'a')]);

  t.same(outcomes(results), [['a', 'transient']]);
  t.equal(results[0]?.reason, `connection to 127.0.0.1:${port} refused (ECONNREFUSED)`);
  t.equal(results[0]?.associated, false);
});

t.test('large object is streamed with backpressure', async (t) => {
  const size = 32 * 1024 * 1024;
  const largeFile = join(directory, 'stream.bin');
  const handle = await open(largeFile, 'w');
  const block = Buffer.alloc(1024 * 1024);
  for (let index = 0; index < size / block.length; index += 1) {
    block.fill(index % 251);
    await handle.write(block);
  }
  await handle.close();

  let bytesRead = 0;
  let paused: (() => void) | undefined;
  const stow = await server(t, () => ({ status: 200 }));
  // The server reads no body until the test lets it.
  stow.beforeBody = () => new Promise((resolve) => (paused = resolve));
  const { client: web } = client(stowDestination(stow.url, { requestTimeoutMs: 10_000 }));
  const object: LazyStoreObject = {
    id: 'large',
    ...still(0).meta,
    read: () => Promise.reject(new Error('the file must be streamed, not read whole')),
    open: async () => {
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytesRead += chunk.length;
          callback(null, chunk);
        },
      });
      return { bytes: size, stream: createReadStream(largeFile).pipe(counter) };
    },
  };

  const sending = transfer(web, [object]);
  await waitFor(() => paused !== undefined, 10_000, 'the server to receive the request headers');
  // Give the client time to read ahead as far as backpressure lets it.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  t.ok(bytesRead < size / 2, `while the server does not read, the client read only ${bytesRead} of ${size} bytes`);
  paused?.();
  const results = await sending;

  t.same(outcomes(results), [['large', 'stored']]);
  t.equal(bytesRead, size, 'the whole file was read in the end');
  const received = stow.requests[0]?.parts[0]?.body;
  t.equal(received?.length, size, 'the server received the whole file');
  t.equal(received?.[size - 1], (size / block.length - 1) % 251, 'last byte as written');
});

t.test('abort ends a request in progress', async (t) => {
  const stow = await server(t, () => undefined);
  const { client: web } = client(stowDestination(stow.url, { requestTimeoutMs: 30_000 }));
  const controller = new AbortController();

  const sending = web.transfer([lazy(still(0), 'a'), lazy(still(1), 'b')], { signal: controller.signal, onResult: () => undefined });
  await waitFor(() => stow.requests.length === 1, 5_000, 'the request to reach the server');
  controller.abort();
  const results = await sending;

  t.same(outcomes(results), [['a', 'transient'], ['b', 'transient']], 'objects without a response stay queued');
  t.equal(results[0]?.reason, 'sending stopped');
});

t.test('response body that trickles without end times out as transient', async (t) => {
  // A plain node:http server, because the scripted one sends whole responses: this one sends a 200 header
  // and then one byte of a chunked body every 100 ms, always inside requestTimeoutMs, never ending.
  const timers = new Set<NodeJS.Timeout>();
  const trickler = http.createServer((request, response) => {
    request.resume();
    request.once('end', () => {
      response.writeHead(200, { 'Content-Type': 'application/dicom+json' });
      const timer = setInterval(() => response.write(' '), 100);
      timers.add(timer);
      response.once('close', () => clearInterval(timer));
    });
  });
  await new Promise<void>((resolve) => trickler.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const timer of timers) clearInterval(timer);
    trickler.closeAllConnections();
    await new Promise<void>((resolve) => trickler.close(() => resolve()));
  });
  const { port } = trickler.address() as AddressInfo;
  const { client: web } = client(stowDestination(`http://127.0.0.1:${port}/dicom-web`, { requestTimeoutMs: 400 }));
  const stopper = new AbortController();
  // Only a safety net so that a regression fails instead of hanging the suite.
  const safety = setTimeout(() => stopper.abort(), 20_000);
  t.teardown(() => clearTimeout(safety));

  const results = await web.transfer([lazy(still(0), 'a')], { signal: stopper.signal, onResult: () => undefined });

  t.same(outcomes(results), [['a', 'transient']]);
  t.match(results[0]?.reason, /^response of 127\.0\.0\.1:\d+ did not end within 400 ms of its headers$/);
});
