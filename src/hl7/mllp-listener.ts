import { EventEmitter } from 'node:events';
import net from 'node:net';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { CARRIAGE_RETURN, END_BLOCK, MllpFramer, START_BLOCK, type MllpFrame } from './mllp-framer.js';

/** A frame that has started gets no more bytes for this long: it is dropped, and the connection stays open. */
const FRAME_TIMEOUT_MS = 60_000;
/** A connection idle this long may be closed to make room when every slot is taken. */
const EVICT_IDLE_MS = 60_000;
/** Minimum time between two warnings about discarded bytes on one connection. */
const GARBAGE_WARNING_INTERVAL_MS = 10_000;
/** Time an open connection gets at stop to finish the message it is processing. */
const STOP_GRACE_MS = 2_000;

export interface MllpListenerOptions {
  host: string;
  port: number;
  /** Source addresses allowed to connect; undefined allows every address. */
  allowedPeers: readonly string[] | undefined;
  maxConnections: number;
  maxMessageBytes: number;
  /** Processes one frame and returns the bytes of its ACK, which the listener frames and sends. */
  handle: (frame: MllpFrame, connectionId: number) => Promise<Buffer>;
  log: Logger;
  /** Idle time after which a connection may be closed to make room for a new one; one minute unless a test sets it. */
  evictIdleMs?: number;
}

export interface MllpListenerStatus {
  listening: boolean;
  port: number | undefined;
  connections: number;
  connectionsRejected: number;
  /** Bytes received outside any frame and discarded. */
  bytesDiscarded: number;
  /** Frames dropped because no end block arrived in time, a new frame started inside them, or the peer closed inside them. */
  framesIncomplete: number;
}

interface MllpListenerEvents {
  connectionRejected: [{ peer: string; reason: 'not-allowed' | 'too-many' }];
  bytesDiscarded: [{ bytes: number }];
}

/**
 * TCP server of the Minimal Lower Layer Protocol (MLLP) of HL7 v2:
 * frames are read from each connection in order and each is acknowledged
 * before the next is processed, so ACKs come back in the order of the
 * messages. The socket is paused while a frame is processed.
 */
export class MllpListener extends EventEmitter<MllpListenerEvents> {
  private readonly options: MllpListenerOptions;
  private readonly log: Logger;
  private server: net.Server | undefined;
  private readonly sockets = new Map<number, { socket: net.Socket; busy: Promise<void>; lastActivity: number; working: boolean }>();
  private nextConnectionId = 1;
  private boundPort: number | undefined;
  private readonly counters = { connectionsRejected: 0, bytesDiscarded: 0, framesIncomplete: 0 };

  constructor(options: MllpListenerOptions) {
    super();
    this.options = options;
    this.log = options.log;
  }

  /** Starts listening; returns the bound port. Throws HL7_LISTENER_FAILED when the address cannot be bound. */
  async start(): Promise<number> {
    const { host, port } = this.options;
    const server = net.createServer((socket) => this.accept(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
      throw new EndocapError(ErrorCodes.HL7_LISTENER_FAILED, `failed to listen on ${host}:${port} for HL7 messages: ${code}; check hl7.host and hl7.port`, { cause: error });
    }
    server.on('error', (error) => this.log.error({ err: { message: errorMessage(error) } }, 'HL7 listener error'));
    this.server = server;
    this.boundPort = (server.address() as net.AddressInfo).port;
    this.log.info({ host, port: this.boundPort, allowedPeers: this.options.allowedPeers?.length ?? 'any' }, 'HL7 listener started');
    return this.boundPort;
  }

  /** Stops accepting, lets each connection finish the message it is processing, then closes them. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const grace = new Promise<void>((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref());
    await Promise.race([Promise.all([...this.sockets.values()].map((connection) => connection.busy)), grace]);
    for (const { socket } of this.sockets.values()) socket.destroy();
    await closed;
    this.log.info('HL7 listener stopped');
  }

  status(): MllpListenerStatus {
    return { listening: this.server !== undefined, port: this.boundPort, connections: this.sockets.size, ...this.counters };
  }

  private accept(socket: net.Socket): void {
    const peer = normalizeAddress(socket.remoteAddress ?? '');
    const allowed = this.options.allowedPeers;
    if (allowed && !allowed.some((address) => normalizeAddress(address) === peer)) {
      this.reject(socket, peer, 'not-allowed');
      return;
    }
    if (this.sockets.size >= this.options.maxConnections && !this.evictIdlest()) {
      this.reject(socket, peer, 'too-many');
      return;
    }

    const connectionId = this.nextConnectionId++;
    const connection = { socket, busy: Promise.resolve(), lastActivity: Date.now(), working: false };
    this.sockets.set(connectionId, connection);
    const log = this.log.child({ connectionId });
    log.info({ peer }, 'HL7 connection opened');
    const framer = new MllpFramer({ maxMessageBytes: this.options.maxMessageBytes });
    let discardedSinceWarning = 0;
    let lastWarningAt = 0;

    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    socket.setTimeout(FRAME_TIMEOUT_MS);
    socket.on('timeout', () => {
      if (!framer.partial) return;
      const bytes = framer.reset();
      this.counters.framesIncomplete += 1;
      log.warn({ bytes, timeoutMs: FRAME_TIMEOUT_MS }, 'incomplete MLLP frame dropped: no end block in time');
    });
    socket.on('data', (chunk: Buffer) => {
      connection.lastActivity = Date.now();
      log.trace({ bytes: chunk.length }, 'MLLP bytes received');
      const { frames, discardedBytes, restartedFrameBytes } = framer.push(chunk);
      for (const bytes of restartedFrameBytes) {
        this.counters.framesIncomplete += 1;
        log.warn({ bytes }, 'incomplete MLLP frame dropped: a new frame started before its end block');
      }
      if (discardedBytes > 0) {
        this.counters.bytesDiscarded += discardedBytes;
        discardedSinceWarning += discardedBytes;
        this.emit('bytesDiscarded', { bytes: discardedBytes });
        if (Date.now() - lastWarningAt >= GARBAGE_WARNING_INTERVAL_MS) {
          log.warn({ bytes: discardedSinceWarning, totalBytes: this.counters.bytesDiscarded }, 'bytes outside an MLLP frame discarded');
          lastWarningAt = Date.now();
          discardedSinceWarning = 0;
        }
      }
      if (frames.length === 0) return;
      socket.pause();
      connection.working = true;
      connection.busy = this.answer(socket, frames, connectionId, log).finally(() => {
        connection.working = false;
        connection.lastActivity = Date.now();
        if (!socket.destroyed) socket.resume();
      });
    });
    socket.on('error', (error) => log.debug({ err: { message: errorMessage(error) } }, 'HL7 connection error'));
    socket.on('close', () => {
      this.sockets.delete(connectionId);
      if (framer.partial) {
        this.counters.framesIncomplete += 1;
        log.warn({ bytes: framer.reset() }, 'HL7 connection closed inside an MLLP frame; the partial message is dropped');
      }
      log.info('HL7 connection closed');
    });
  }

  private async answer(socket: net.Socket, frames: MllpFrame[], connectionId: number, log: Logger): Promise<void> {
    for (const frame of frames) {
      let ack: Buffer;
      try {
        ack = await this.options.handle(frame, connectionId);
      } catch (error) {
        // The handler returns an ACK for every failure itself, so an error here is a defect. The peer gets no ACK and sends again.
        log.error({ err: { message: errorMessage(error) } }, 'HL7 frame not processed');
        continue;
      }
      if (socket.destroyed) return;
      const flushed = socket.write(Buffer.concat([Buffer.from([START_BLOCK]), ack, Buffer.from([END_BLOCK, CARRIAGE_RETURN])]));
      // A peer that does not read its ACKs is not read from either, so unsent ACKs cannot pile up in memory.
      if (!flushed) await waitForDrain(socket);
    }
  }

  /**
   * Makes room for a new connection by closing the one idle for longest, when
   * it has been idle for at least a minute. An interface engine that lost its
   * connection without a FIN (a switch restart, a NAT time-out) reconnects and
   * must not find every slot held by its dead connections.
   */
  private evictIdlest(): boolean {
    let idlest: { socket: net.Socket; lastActivity: number; working: boolean } | undefined;
    for (const connection of this.sockets.values()) {
      if (connection.working) continue;
      if (idlest === undefined || connection.lastActivity < idlest.lastActivity) idlest = connection;
    }
    if (idlest === undefined || Date.now() - idlest.lastActivity < (this.options.evictIdleMs ?? EVICT_IDLE_MS)) return false;
    this.log.warn({ idleMs: Date.now() - idlest.lastActivity, maxConnections: this.options.maxConnections }, 'idle HL7 connection closed to make room for a new one');
    idlest.socket.destroy();
    return true;
  }

  private reject(socket: net.Socket, peer: string, reason: 'not-allowed' | 'too-many'): void {
    this.counters.connectionsRejected += 1;
    this.log.warn({ peer, reason, maxConnections: this.options.maxConnections }, 'HL7 connection rejected');
    this.emit('connectionRejected', { peer, reason });
    socket.destroy();
  }
}

/** Compares IPv4 peers that arrive as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) with their plain form. */
function normalizeAddress(address: string): string {
  return address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1').toLowerCase();
}

/** Resolves when the socket's write buffer has drained, or when it closes. */
function waitForDrain(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
