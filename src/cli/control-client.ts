import net from 'node:net';
import type { ControlRequest, ControlResponse, ControlResults } from '../daemon/control-server.js';
import { EndocapError, ErrorCodes, errorMessage, type ErrorCode } from '../errors.js';

const knownCodes = new Set<string>(Object.values(ErrorCodes));
const DEFAULT_TIMEOUT_MS = 60_000;

interface Waiter {
  resolve: (response: ControlResponse) => void;
  reject: (error: Error) => void;
}

/**
 * Client of the daemon's control socket (protocol in src/daemon/control-server.ts).
 * The daemon responds in request order, so each response belongs to the oldest waiting request.
 */
export class ControlClient {
  private readonly socket: net.Socket;
  private readonly waiters: Waiter[] = [];
  private readonly timeoutMs: number;
  private chunks: Buffer[] = [];
  private closedError: Error | undefined;

  private constructor(socket: net.Socket, timeoutMs: number) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    socket.on('data', (data: Buffer) => this.receive(data));
    socket.on('error', (error) => this.fail(new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, `control socket failed: ${error.message}`, { cause: error })));
    socket.on('close', () => this.fail(new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, 'the daemon closed the control connection')));
  }

  /**
   * Connects to a running daemon. Resolves to undefined when no daemon listens
   * (no socket file, or one left by a daemon that is gone).
   */
  static async connect(socketPath: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ControlClient | undefined> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath);
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        resolve(new ControlClient(socket, timeoutMs));
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') resolve(undefined);
        else reject(new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, `failed to connect to the control socket ${socketPath}: ${error.message}`, { cause: error }));
      });
    });
  }

  /** Sends one request; throws an EndocapError with the daemon's error code when it fails. */
  async request<C extends ControlRequest>(request: C): Promise<ControlResults[C['command']]> {
    if (this.closedError) throw this.closedError;
    const response = await new Promise<ControlResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, `the daemon did not respond to "${request.command}" within ${this.timeoutMs} ms`));
        this.socket.destroy();
      }, this.timeoutMs);
      this.waiters.push({
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.socket.write(`${JSON.stringify(request)}\n`);
    });
    if (!response.ok) {
      const code = knownCodes.has(response.error.code) ? (response.error.code as ErrorCode) : ErrorCodes.CONTROL_REQUEST_FAILED;
      throw new EndocapError(code, response.error.message);
    }
    return response.result as ControlResults[C['command']];
  }

  close(): void {
    this.socket.end();
  }

  private receive(data: Buffer): void {
    let rest = data;
    for (let newline = rest.indexOf(0x0a); newline !== -1; newline = rest.indexOf(0x0a)) {
      this.chunks.push(rest.subarray(0, newline));
      const line = Buffer.concat(this.chunks).toString('utf8');
      this.chunks = [];
      rest = rest.subarray(newline + 1);
      const waiter = this.waiters.shift();
      if (waiter === undefined) continue;
      try {
        waiter.resolve(JSON.parse(line) as ControlResponse);
      } catch (error) {
        waiter.reject(new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, `invalid response from the daemon: ${errorMessage(error)}`));
      }
    }
    this.chunks.push(rest);
  }

  private fail(error: Error): void {
    this.closedError ??= error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.closedError);
  }
}
