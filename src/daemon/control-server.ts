import { chmod, lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { z } from 'zod';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { SenderStatus } from '../pacs/sender.js';
import { deliveryStates, importObject, listQueue, readForExport, retryObjects, type ImportResult, type QueueItem, type RetryResult } from '../spool/queue-operations.js';
import type { Spool, SpoolStats } from '../spool/spool.js';
import type { DeliveryState, SpoolEntry } from '../spool/types.js';
import { examControlRequestSchemas, runExamControl, type ExamControlResults } from './exam-control.js';
import type { ExamWorkflow } from './exam-workflow.js';

/*
 * Control socket of the daemon: a Unix domain socket at
 * `<stateDirectory>/control.sock`, mode 0660, so the daemon's user and group
 * can use it. Operator commands (`endocap queue ...`) use it while the daemon
 * runs, because the daemon alone writes the spool then.
 *
 * Protocol: JSON lines. The client writes one request object per line, and the
 * daemon responds to each with one line, in the order of the requests:
 *   {"ok":true,"result":RESULT}
 *   {"ok":false,"error":{"code":"SPOOL_UNKNOWN_OBJECT","message":"no spooled object with id ..."}}
 *
 * Requests and their RESULT:
 *   {"command":"status"}
 *     → DaemonStatus (below): version, boxId, pid, startedAt; video {signal,
 *       width, height, fps}; footswitch {kind, connected, lastError}; spool
 *       (SpoolStats: objects, bytes, retained, retainedBytes, alarms[{id,
 *       severity, reason}], destinations{NAME: {queued, sending, setAside,
 *       awaitingCommitment, bytesQueued, oldestQueuedAt}}); senders
 *       (SenderStatus[]: destination, lastResult, lastError, consecutiveFailures,
 *       nextAttemptAt); lastError. Absent optional fields are left out.
 *   {"command":"queue-list","state":"set-aside"}        state is optional
 *     → {"objects":[QueueItem]}: id, queuedAt, bytes, sopClassUid, sopClassName, deliveries{NAME: DeliveryRecord}
 *   {"command":"queue-retry","ids":["..."],"destination":"pacs"}  or  {"command":"queue-retry","allSetAside":true}
 *     → RetryResult: {"requeued":[{id, destination, previousState}], "problems":[{id, reason}]}
 *   {"command":"queue-export","id":"..."}
 *     → {"entry":SpoolEntry,"part10":BASE64}
 *   {"command":"queue-import","part10":BASE64}
 *     → ImportResult: {"outcome":"imported"|"duplicate","id":"..."}; an invalid file is an error
 *       with code DICOM_OBJECT_INVALID, a full spool one with SPOOL_FULL.
 *
 * The exam workflow's requests (exam-start, exam-end, exam-status,
 * worklist-refresh, worklist-list) are listed in exam-control.ts.
 *
 * One object per export and import request keeps each line bounded; a line
 * longer than MAX_REQUEST_BYTES is rejected and the connection closed.
 */

export interface DaemonStatus {
  version: string;
  boxId: string;
  pid: number;
  startedAt: string;
  video: { signal: boolean; width?: number; height?: number; fps: number };
  footswitch: { kind: 'serial' | 'keyboard' | 'none'; connected: boolean; lastError?: string };
  spool: SpoolStats;
  senders: SenderStatus[];
  lastError?: string;
}

const deliveryState = z.enum(deliveryStates as [DeliveryState, ...DeliveryState[]]);

export const controlRequestSchema = z.discriminatedUnion('command', [
  z.strictObject({ command: z.literal('status') }),
  z.strictObject({ command: z.literal('queue-list'), state: deliveryState.optional() }),
  z.strictObject({
    command: z.literal('queue-retry'),
    ids: z.array(z.string()).optional(),
    allSetAside: z.boolean().optional(),
    destination: z.string().optional(),
  }),
  z.strictObject({ command: z.literal('queue-export'), id: z.string() }),
  z.strictObject({ command: z.literal('queue-import'), part10: z.base64() }),
  ...examControlRequestSchemas,
]);

export type ControlRequest = z.infer<typeof controlRequestSchema>;

/** Result of each command, by command name. */
export interface ControlResults extends ExamControlResults {
  status: DaemonStatus;
  'queue-list': { objects: QueueItem[] };
  'queue-retry': RetryResult;
  'queue-export': { entry: SpoolEntry; part10: string };
  'queue-import': ImportResult;
}

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

/** Maximum length of a request line in bytes: enough to import one object of about 190 MB, base64-encoded. */
export const MAX_REQUEST_BYTES = 256 * 1024 * 1024;
/** Maximum socket path length in bytes on Linux (sun_path is 108 bytes with its terminating NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

export interface ControlServerOptions {
  socketPath: string;
  spool: Spool;
  status: () => DaemonStatus;
  /** Called after a request queued objects, so that senders start at once. */
  objectsQueued: () => void;
  /** Serves the exam requests; they fail with WORKLIST_NOT_CONFIGURED without it. */
  exams?: ExamWorkflow;
  log: Logger;
}

/** Serves the control protocol above on a Unix domain socket. */
export class ControlServer {
  private readonly options: ControlServerOptions;
  private readonly log: Logger;
  private server: net.Server | undefined;
  private readonly connections = new Set<net.Socket>();

  constructor(options: ControlServerOptions) {
    this.options = options;
    this.log = options.log.child({ component: 'control' });
  }

  /** Listens on the socket, replacing a socket file left by a daemon that is gone. */
  async start(): Promise<void> {
    const { socketPath } = this.options;
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
      throw new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, `control socket path ${socketPath} is longer than ${MAX_SOCKET_PATH_BYTES} bytes; use a shorter stateDirectory`);
    }
    await removeStaleSocket(socketPath);
    const server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.log.error({ err: { message: errorMessage(error) } }, 'control socket failed'));
    this.server = server;
    await chmod(socketPath, 0o660);
    this.log.info({ socketPath }, 'control socket listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    for (const socket of this.connections) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.log.info('control socket closed');
  }

  private serve(socket: net.Socket): void {
    this.connections.add(socket);
    let chunks: Buffer[] = [];
    let pendingBytes = 0;
    let chain = Promise.resolve();

    socket.on('data', (data: Buffer) => {
      let rest = data;
      for (let newline = rest.indexOf(0x0a); newline !== -1; newline = rest.indexOf(0x0a)) {
        chunks.push(rest.subarray(0, newline));
        const line = Buffer.concat(chunks).toString('utf8');
        chunks = [];
        pendingBytes = 0;
        rest = rest.subarray(newline + 1);
        if (line.trim() === '') continue;
        chain = chain.then(() => this.answer(socket, line));
      }
      chunks.push(rest);
      pendingBytes += rest.length;
      if (pendingBytes > MAX_REQUEST_BYTES) {
        this.log.warn({ bytes: pendingBytes }, 'control request too long, connection closed');
        chain = chain.then(() => this.reply(socket, failure(ErrorCodes.CONTROL_REQUEST_FAILED, `request longer than ${MAX_REQUEST_BYTES} bytes`))).then(() => {
          socket.end();
        });
        chunks = [];
        pendingBytes = 0;
        socket.pause();
      }
    });
    socket.on('error', (error) => this.log.debug({ err: { message: errorMessage(error) } }, 'control connection failed'));
    socket.on('close', () => this.connections.delete(socket));
  }

  private async answer(socket: net.Socket, line: string): Promise<void> {
    let request: ControlRequest;
    try {
      request = controlRequestSchema.parse(JSON.parse(line));
    } catch (error) {
      const message = error instanceof z.ZodError ? z.prettifyError(error).replace(/\n/g, '; ') : errorMessage(error);
      await this.reply(socket, failure(ErrorCodes.CONTROL_REQUEST_FAILED, `invalid control request: ${message}`));
      return;
    }
    this.log.debug({ command: request.command }, 'control request received');
    try {
      const result = await this.run(request);
      await this.reply(socket, { ok: true, result });
    } catch (error) {
      const code = error instanceof EndocapError ? error.code : ErrorCodes.CONTROL_REQUEST_FAILED;
      this.log.warn({ command: request.command, code, err: { message: errorMessage(error) } }, 'control request failed');
      await this.reply(socket, failure(code, errorMessage(error)));
    }
  }

  private async run(request: ControlRequest): Promise<ControlResults[ControlRequest['command']]> {
    const { spool } = this.options;
    switch (request.command) {
      case 'status':
        return this.options.status();
      case 'queue-list':
        return { objects: listQueue(spool, request.state) };
      case 'queue-retry': {
        if (request.allSetAside !== true && (request.ids ?? []).length === 0) {
          throw new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, 'queue-retry needs "ids" or "allSetAside": true');
        }
        const result = await retryObjects(spool, request);
        this.log.info({ requeued: result.requeued.length, problems: result.problems.length }, 'objects queued again over the control socket');
        if (result.requeued.length > 0) this.options.objectsQueued();
        return result;
      }
      case 'queue-export': {
        const { entry, part10 } = await readForExport(spool, request.id);
        return { entry, part10: part10.toString('base64') };
      }
      case 'queue-import': {
        const result = await importObject(spool, Buffer.from(request.part10, 'base64'));
        this.log.info({ objectId: result.id, outcome: result.outcome }, 'object imported over the control socket');
        if (result.outcome === 'imported') this.options.objectsQueued();
        return result;
      }
      case 'exam-start':
      case 'exam-end':
      case 'exam-status':
      case 'worklist-refresh':
      case 'worklist-list':
        return runExamControl(this.options.exams, request);
    }
  }

  private async reply(socket: net.Socket, response: ControlResponse): Promise<void> {
    if (socket.destroyed) return;
    if (!socket.write(`${JSON.stringify(response)}\n`)) {
      await new Promise<void>((resolve) => {
        socket.once('drain', resolve);
        socket.once('close', resolve);
      });
    }
  }
}

function failure(code: string, message: string): ControlResponse {
  return { ok: false, error: { code, message } };
}

/**
 * Removes a socket file that nothing listens on. A live listener means another
 * daemon uses this state folder, which is an error; a file that is not a socket is left alone.
 */
async function removeStaleSocket(socketPath: string): Promise<void> {
  try {
    if (!(await lstat(socketPath)).isSocket()) {
      throw new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, `${socketPath} exists and is not a socket; remove it`);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const listening = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (listening) throw new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, `another process listens on the control socket ${socketPath}`);
  await unlink(socketPath);
}
