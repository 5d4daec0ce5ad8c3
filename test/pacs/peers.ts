import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import dimse from 'dcmjs-dimse';
import type { association, requests, Scp as DimseScp } from 'dcmjs-dimse';

const { Scp, responses, constants } = dimse;

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

/** Starts a TCP server on 127.0.0.1 that accepts connections and never sends a byte. */
export async function startSilentServer(): Promise<RunningPeer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port assigned');
  return {
    port: address.port,
    output: () => '',
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/**
 * What a fake SCP does after it accepted the association. Fakes stand in for
 * behaviour no real peer shows on request: chosen failure statuses, aborts and
 * resets in the middle of a transfer, and peers that stop responding.
 */
export type FakeBehaviour =
  | { kind: 'status'; status: number }
  | { kind: 'abort-during-data' }
  | { kind: 'reset-during-data' }
  | { kind: 'never-answer' }
  | { kind: 'stop-reading' }
  | { kind: 'reject'; result: number; source: number; reason: number };

export interface FakeScp extends RunningPeer {
  /** C-STORE requests whose data set arrived completely. */
  received: number;
  /** Associations accepted so far. */
  associations: number;
}

type CStoreRequestInstance = InstanceType<typeof requests.CStoreRequest>;

/** Starts a dcmjs-dimse Scp behind a server bound to 127.0.0.1 only (Server.listen binds every interface). */
export async function startFakeScp(behaviour: FakeBehaviour): Promise<FakeScp> {
  const sockets = new Set<net.Socket>();
  const state = { received: 0, associations: 0 };

  class Fake extends Scp {
    private readonly socket: net.Socket;

    constructor(socket: net.Socket) {
      super(socket, { associationTimeout: 60_000, pduTimeout: 60_000 });
      this.socket = socket;
    }

    override associationRequested(requested: InstanceType<typeof association.Association>): void {
      if (behaviour.kind === 'reject') {
        this.sendAssociationReject(behaviour.result, behaviour.source, behaviour.reason);
        return;
      }
      for (const { context } of requested.getPresentationContexts()) {
        const first = context.getTransferSyntaxUids()[0];
        context.setResult(constants.PresentationContextResult.Accept, first);
      }
      state.associations += 1;
      this.sendAssociationAccept();
      if (behaviour.kind === 'stop-reading') this.socket.pause();
    }

    override createStoreWritableStream(...args: Parameters<DimseScp['createStoreWritableStream']>): ReturnType<DimseScp['createStoreWritableStream']> {
      // The first P-DATA of a data set has arrived: the transfer is under way.
      if (behaviour.kind === 'abort-during-data') this.sendAbort(constants.AbortSource.ServiceProvider, constants.AbortReason.NotSpecified);
      if (behaviour.kind === 'reset-during-data') this.socket.resetAndDestroy();
      return super.createStoreWritableStream(...args);
    }

    override cStoreRequest(request: CStoreRequestInstance, callback: (response: InstanceType<typeof responses.CStoreResponse>) => void): void {
      state.received += 1;
      if (behaviour.kind !== 'status') return;
      const response = responses.CStoreResponse.fromRequest(request);
      response.setStatus(behaviour.status);
      callback(response);
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
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port assigned');

  return {
    port: address.port,
    get received() {
      return state.received;
    },
    get associations() {
      return state.associations;
    },
    output: () => '',
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
