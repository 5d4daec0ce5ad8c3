import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dimse from 'dcmjs-dimse';
import type { association, requests, Scp as DimseScp } from 'dcmjs-dimse';

const { Scp, responses, constants } = dimse;
const run = promisify(execFile);

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
async function waitForPort(port: number, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`peer exited with code ${child.exitCode} before listening`);
    const connected = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (connected) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

export interface RunningPeer {
  port: number;
  /** Last lines the peer wrote, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

function spawnPeer(command: string, args: string[]): { child: ChildProcess; output: () => string } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TCP_NODELAY: '1' } });
  let text = '';
  const keep = (chunk: Buffer): void => {
    text = (text + chunk.toString('utf8')).slice(-8_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output: () => text };
}

/**
 * Starts DCMTK storescp. It listens on every interface (DCMTK 3.6.7 has no
 * bind-address option), on a port picked free on loopback.
 */
export async function startStorescp(options: { port: number; aeTitle: string; outputDirectory: string; args?: string[] }): Promise<RunningPeer> {
  const args = [...(options.args ?? []), '-aet', options.aeTitle, '-od', options.outputDirectory, String(options.port)];
  const { child, output } = spawnPeer('storescp', args);
  await waitForPort(options.port, child);
  return { port: options.port, output, stop: () => stopChild(child) };
}

/** Starts `server` on 127.0.0.1, on `port` or a free one; stop() destroys `sockets` and closes it. */
export async function listenOnLoopback(server: net.Server, sockets: Set<net.Socket>, port = 0): Promise<{ port: number; stop: () => Promise<void> }> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port assigned');
  return {
    port: address.port,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** Starts a TCP server on 127.0.0.1 that accepts connections and never sends a byte. */
export async function startSilentServer(): Promise<RunningPeer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  });
  return { ...(await listenOnLoopback(server, sockets)), output: () => '' };
}

/**
 * What a fake SCP does after it accepted the association. Fakes stand in for
 * behaviour no real peer shows on request: chosen failure statuses, aborts and
 * resets in the middle of a transfer, and peers that stop responding.
 */
export type FakeBehaviour =
  | { kind: 'status'; status: number }
  /** The n-th C-STORE over the fake's lifetime gets statuses[n]; the last one repeats. */
  | { kind: 'statuses'; statuses: number[] }
  | { kind: 'abort-during-data' }
  /** Reads the data set until more than `bytes` arrived, then sends A-ABORT. */
  | { kind: 'abort-after-bytes'; bytes: number }
  /** Responds with success to the first `responses` C-STOREs over the fake's lifetime, then sends A-ABORT right after the last response. */
  | { kind: 'abort-after-responses'; responses: number }
  /** Responds with success to the first `responses` C-STOREs, the last response and an A-ABORT in one TCP write. */
  | { kind: 'abort-with-response'; responses: number }
  /** Responds with success to the first `responses` C-STOREs over the fake's lifetime, then to none. */
  | { kind: 'silent-after-responses'; responses: number }
  /** Sends A-ABORT right after accepting the association. */
  | { kind: 'abort-after-accept' }
  /** Accepts the association but no presentation context. */
  | { kind: 'reject-contexts' }
  | { kind: 'reset-during-data' }
  | { kind: 'never-answer' }
  | { kind: 'stop-reading' }
  | { kind: 'reject'; result: number; source: number; reason: number };

export interface FakeScp extends RunningPeer {
  /** C-STORE requests whose data set arrived completely. */
  received: number;
  /** Associations accepted so far. */
  associations: number;
  /** A-ABORTs the fake sent. */
  aborts: number;
  /** Associations the fake rejected. */
  rejections: number;
  /** Bytes received on every connection, PDU headers included. */
  bytesReceived: number;
}

type CStoreRequestInstance = InstanceType<typeof requests.CStoreRequest>;

/**
 * Starts a dcmjs-dimse Scp behind a server bound to 127.0.0.1 only
 * (Server.listen binds every interface), on `port` or a free one.
 */
export async function startFakeScp(behaviour: FakeBehaviour, port = 0): Promise<FakeScp> {
  const sockets = new Set<net.Socket>();
  const state = { received: 0, associations: 0, aborts: 0, rejections: 0, bytesReceived: 0 };

  class Fake extends Scp {
    private readonly socket: net.Socket;
    private aborted = false;

    constructor(socket: net.Socket) {
      super(socket, { associationTimeout: 60_000, pduTimeout: 60_000 });
      this.socket = socket;
      let connectionBytes = 0;
      socket.on('data', (chunk: Buffer) => {
        state.bytesReceived += chunk.length;
        connectionBytes += chunk.length;
        // The fake keeps the connection open after its A-ABORT, so that only the abort itself can end the transfer.
        if (behaviour.kind === 'abort-after-bytes' && connectionBytes > behaviour.bytes) this.abortAssociation();
      });
    }

    override associationRequested(requested: InstanceType<typeof association.Association>): void {
      if (behaviour.kind === 'reject') {
        state.rejections += 1;
        this.sendAssociationReject(behaviour.result, behaviour.source, behaviour.reason);
        return;
      }
      for (const { context } of requested.getPresentationContexts()) {
        const first = context.getTransferSyntaxUids()[0];
        if (behaviour.kind === 'reject-contexts') context.setResult(constants.PresentationContextResult.RejectAbstractSyntaxNotSupported);
        else context.setResult(constants.PresentationContextResult.Accept, first);
      }
      state.associations += 1;
      this.sendAssociationAccept();
      if (behaviour.kind === 'stop-reading') this.socket.pause();
      if (behaviour.kind === 'abort-after-accept') setImmediate(() => this.abortAssociation());
    }

    override createStoreWritableStream(...args: Parameters<DimseScp['createStoreWritableStream']>): ReturnType<DimseScp['createStoreWritableStream']> {
      // The first P-DATA of a data set has arrived: the transfer is under way.
      if (behaviour.kind === 'abort-during-data') this.abortAssociation();
      if (behaviour.kind === 'reset-during-data') this.socket.resetAndDestroy();
      return super.createStoreWritableStream(...args);
    }

    private abortAssociation(): void {
      if (this.aborted) return;
      this.aborted = true;
      state.aborts += 1;
      this.sendAbort(constants.AbortSource.ServiceProvider, constants.AbortReason.NotSpecified);
    }

    override cStoreRequest(request: CStoreRequestInstance, callback: (response: InstanceType<typeof responses.CStoreResponse>) => void): void {
      const index = state.received;
      state.received += 1;
      let status: number;
      if (behaviour.kind === 'status') status = behaviour.status;
      else if (behaviour.kind === 'statuses') status = behaviour.statuses[Math.min(index, behaviour.statuses.length - 1)] ?? 0;
      else if ('responses' in behaviour && index < behaviour.responses) status = 0;
      else return;
      const response = responses.CStoreResponse.fromRequest(request);
      response.setStatus(status);
      if (behaviour.kind === 'abort-with-response' && index + 1 === behaviour.responses) {
        // Corked, the response and the A-ABORT leave in one segment and reach the client in one read.
        this.socket.cork();
        callback(response);
        this.abortAssociation();
        process.nextTick(() => this.socket.uncork());
        return;
      }
      callback(response);
      if (behaviour.kind === 'abort-after-responses' && index + 1 === behaviour.responses) setImmediate(() => this.abortAssociation());
    }

    override associationReleaseRequested(): void {
      this.sendAssociationReleaseResponse();
    }
  }

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    new Fake(socket);
  });
  const listening = await listenOnLoopback(server, sockets, port);

  return {
    ...listening,
    get received() {
      return state.received;
    },
    get associations() {
      return state.associations;
    },
    get aborts() {
      return state.aborts;
    },
    get rejections() {
      return state.rejections;
    },
    get bytesReceived() {
      return state.bytesReceived;
    },
    output: () => '',
  };
}

/** A proxy started by startPduLengthProxy. */
export interface PduLengthProxy extends RunningPeer {
  /** A-ASSOCIATE-ACs whose maximum length was rewritten. */
  rewrites: number;
}

/**
 * Starts a TCP proxy on 127.0.0.1 in front of `targetPort` that sets the
 * Maximum Length Received sub-item (0x51) of the peer's A-ASSOCIATE-AC to
 * `announced` (PS3.8 9.3.3 and D.1). No real peer announces an odd or tiny
 * length on request. The A-ASSOCIATE-AC must arrive in one chunk, as it does
 * on loopback; `rewrites` counts those changed.
 */
export async function startPduLengthProxy(targetPort: number, announced: number): Promise<PduLengthProxy> {
  const sockets = new Set<net.Socket>();
  let rewrites = 0;
  const rewrite = (chunk: Buffer): void => {
    if (chunk[0] !== 0x02 || chunk.length < 6 || chunk.length < 6 + chunk.readUInt32BE(2)) return;
    // Items follow the 6-byte PDU header and 68 bytes of fixed fields.
    for (let item = 74; item + 4 <= chunk.length; item += 4 + chunk.readUInt16BE(item + 2)) {
      if (chunk[item] !== 0x50) continue;
      const end = item + 4 + chunk.readUInt16BE(item + 2);
      for (let sub = item + 4; sub + 8 <= end; sub += 4 + chunk.readUInt16BE(sub + 2)) {
        if (chunk[sub] !== 0x51) continue;
        chunk.writeUInt32BE(announced, sub + 4);
        rewrites += 1;
      }
    }
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
      socket.on('error', () => socket.destroy());
    }
    client.pipe(upstream);
    let first = true;
    upstream.on('data', (chunk: Buffer) => {
      if (first) rewrite(chunk);
      first = false;
      client.write(chunk);
    });
  });
  const listening = await listenOnLoopback(server, sockets);
  return {
    ...listening,
    get rewrites() {
      return rewrites;
    },
    output: () => '',
  };
}

export interface WorklistEntry {
  patientName: string;
  patientId: string;
  accessionNumber: string;
  studyInstanceUid: string;
  scheduledProcedureStepId: string;
}

/** DCMTK dump text of one worklist item with every attribute wlmscpfs requires of a .wl file. */
function worklistDump(entry: WorklistEntry): string {
  return [
    '(0008,0005) CS [ISO_IR 192]',
    `(0008,0050) SH [${entry.accessionNumber}]`,
    '(0008,0090) PN []',
    '(0008,1110) SQ (Sequence with explicit length #=0)',
    '(fffe,e0dd) na (SequenceDelimitationItem for re-encod.)',
    '(0008,1120) SQ (Sequence with explicit length #=0)',
    '(fffe,e0dd) na (SequenceDelimitationItem for re-encod.)',
    `(0010,0010) PN [${entry.patientName}]`,
    `(0010,0020) LO [${entry.patientId}]`,
    '(0010,0030) DA [19700101]',
    '(0010,0040) CS [O]',
    `(0020,000d) UI [${entry.studyInstanceUid}]`,
    '(0032,1032) PN []',
    '(0032,1060) LO [Colonoscopy]',
    '(0040,0100) SQ (Sequence with explicit length #=1)',
    '  (fffe,e000) na (Item with explicit length #=8)',
    '    (0008,0060) CS [ES]',
    '    (0040,0001) AE [ENDOCAP]',
    '    (0040,0002) DA [20261204]',
    '    (0040,0003) TM [0800]',
    '    (0040,0006) PN []',
    '    (0040,0007) LO [Colonoscopy]',
    `    (0040,0009) SH [${entry.scheduledProcedureStepId}]`,
    '    (0040,0010) SH [ROOM1]',
    '  (fffe,e00d) na (ItemDelimitationItem for re-encoding)',
    '(fffe,e0dd) na (SequenceDelimitationItem for re-encod.)',
    `(0040,1001) SH [RP-${entry.scheduledProcedureStepId}]`,
    '',
  ].join('\n');
}

/**
 * Starts DCMTK wlmscpfs on `port` over a worklist folder of .wl files made
 * with dump2dcm. `-csk` makes it return SpecificCharacterSet. For a query with
 * an optional key it does not support, such as PatientAge, it returns status
 * FF01 (pending, with warning) with every match.
 */
export async function startWorklistScp(options: { port: number; aeTitle: string; directory: string; entries: WorklistEntry[] }): Promise<RunningPeer> {
  const folder = join(options.directory, options.aeTitle);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'lockfile'), '');
  for (const [index, entry] of options.entries.entries()) {
    const dumpFile = join(options.directory, `entry-${index}.dump`);
    await writeFile(dumpFile, worklistDump(entry));
    await run('dump2dcm', [dumpFile, join(folder, `entry-${index}.wl`)]);
  }
  const { child, output } = spawnPeer('wlmscpfs', ['-csk', '-dfp', options.directory, String(options.port)]);
  await waitForPort(options.port, child);
  return { port: options.port, output, stop: () => stopChild(child) };
}
