import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small STOW-RS server on loopback for the responses Orthanc never sends
 * (202 with failures, 409, 413, 401, 503, a stall). It is a stand-in written
 * for these tests, not a DICOMweb implementation: it parses the multipart body
 * and sends the response the test scripts.
 */

export interface ReceivedPart {
  contentType: string;
  body: Buffer;
}

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  parts: ReceivedPart[];
}

export interface ScriptedResponse {
  status: number;
  /** DICOM JSON response body, sent as application/dicom+json. */
  json?: unknown;
}

/** Decides the response from the request; returning undefined leaves the request hanging. */
export type Responder = (request: ReceivedRequest, index: number) => ScriptedResponse | undefined;

export interface StowServer {
  url: string;
  requests: ReceivedRequest[];
  /** Headers of requests rejected after "Expect: 100-continue", before any body was read. */
  rejectedEarly: Array<IncomingMessage['headers']>;
  respond: Responder;
  /** Called for "Expect: 100-continue"; returning a response rejects without reading the body. */
  onExpect?: (headers: IncomingMessage['headers']) => ScriptedResponse | undefined;
  /** Called with each request before its body is read; the body is read once the returned promise resolves. */
  beforeBody?: () => Promise<void>;
  stop(): Promise<void>;
}

/** Splits a multipart/related body (RFC 2046 5.1). */
export function parseMultipart(body: Buffer, boundary: string): ReceivedPart[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: ReceivedPart[] = [];
  let position = body.indexOf(delimiter);
  if (position < 0) throw new Error('multipart body without its boundary');
  for (;;) {
    const afterDelimiter = position + delimiter.length;
    if (body.subarray(afterDelimiter, afterDelimiter + 2).toString('latin1') === '--') return parts;
    const headersStart = afterDelimiter + 2;
    const headersEnd = body.indexOf('\r\n\r\n', headersStart);
    if (headersEnd < 0) throw new Error('multipart part without the blank line after its headers');
    const next = body.indexOf(Buffer.from(`\r\n--${boundary}`), headersEnd);
    if (next < 0) throw new Error('multipart part without a closing boundary');
    const headers = body.subarray(headersStart, headersEnd).toString('latin1');
    const contentType = /^content-type:\s*(.+)$/im.exec(headers)?.[1]?.trim() ?? '';
    parts.push({ contentType, body: body.subarray(headersEnd + 4, next) });
    position = next + 2;
  }
}

function send(response: ServerResponse, scripted: ScriptedResponse): void {
  if (scripted.json === undefined) {
    response.writeHead(scripted.status, { 'Content-Length': 0 });
    response.end();
    return;
  }
  const text = JSON.stringify(scripted.json);
  response.writeHead(scripted.status, { 'Content-Type': 'application/dicom+json', 'Content-Length': Buffer.byteLength(text) });
  response.end(text);
}

export async function startStowServer(respond: Responder): Promise<StowServer> {
  const sockets = new Set<import('node:net').Socket>();
  const state: StowServer = {
    url: '',
    requests: [],
    rejectedEarly: [],
    respond,
    async stop(): Promise<void> {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    await state.beforeBody?.();
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const boundary = /boundary=("?)([^";]+)\1/i.exec(request.headers['content-type'] ?? '')?.[2];
    const received: ReceivedRequest = {
      method: request.method ?? '',
      url: request.url ?? '',
      headers: request.headers,
      parts: boundary ? parseMultipart(body, boundary) : [],
    };
    const index = state.requests.push(received) - 1;
    const scripted = state.respond(received, index);
    if (scripted) send(response, scripted);
  }

  const server = http.createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      response.destroy(error instanceof Error ? error : new Error(String(error)));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('checkContinue', (request, response) => {
    const early = state.onExpect?.(request.headers);
    if (early) {
      state.rejectedEarly.push(request.headers);
      send(response, early);
      return;
    }
    response.writeContinue();
    server.emit('request', request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dicom-web`;
  return state;
}

/** Builds a DICOM JSON STOW-RS response that names stored and failed instances (PS3.18 10.5.3). */
export function stowResponse(stored: Array<{ uid: string; warning?: number }>, failed: Array<{ uid: string; reason?: number }>): unknown {
  const response: Record<string, unknown> = {};
  if (stored.length > 0) {
    response['00081199'] = {
      vr: 'SQ',
      Value: stored.map(({ uid, warning }) => ({
        '00081150': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.77.1.1'] },
        '00081155': { vr: 'UI', Value: [uid] },
        ...(warning === undefined ? {} : { '00081196': { vr: 'US', Value: [warning] } }),
      })),
    };
  }
  if (failed.length > 0) {
    response['00081198'] = {
      vr: 'SQ',
      Value: failed.map(({ uid, reason }) => ({
        '00081150': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.77.1.1'] },
        '00081155': { vr: 'UI', Value: [uid] },
        ...(reason === undefined ? {} : { '00081197': { vr: 'US', Value: [reason] } }),
      })),
    };
  }
  return response;
}
