import { readFile } from 'node:fs/promises';
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { StowRsDestinationConfig } from '../profile/schema.js';

/** PEM contents for an https:// request. */
export interface HttpsSettings {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
}

export interface HttpRequestOptions {
  url: URL;
  headers: Record<string, string | number>;
  /** The request body; without one the request is a GET. */
  body?: Readable;
  tls?: HttpsSettings;
  connectTimeoutMs: number;
  /** Maximum time without any byte sent or received, in milliseconds. */
  requestTimeoutMs: number;
  signal: AbortSignal;
  /** Sends "Expect: 100-continue", and the body only once the server agrees or `continueWaitMs` passes. */
  expectContinue: boolean;
}

/** A complete HTTP response, or a failure before one arrived. */
export type HttpRequestOutcome =
  | { kind: 'response'; status: number; contentType: string | undefined; body: Buffer }
  | { kind: 'failed'; connected: boolean; reason: string };

/** Response bodies longer than this are cut: a STOW-RS response names at most a few hundred instances. */
const maxResponseBytes = 4 * 1024 * 1024;

/**
 * How long the body waits for "100 Continue". Servers that ignore the Expect
 * header (Orthanc 1.10 among them) get the body after this delay.
 */
const continueWaitMs = 1_000;

type TlsConfig = NonNullable<StowRsDestinationConfig['tls']>;

async function readPem(setting: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
    throw new EndocapError(ErrorCodes.DICOMWEB_REQUEST_FAILED, `TLS ${setting} ${file} could not be read (${code})`, { retryable: true, cause: error });
  }
}

/** Reads the PEM files of a destination at every request, so that renewed certificates are picked up without a restart. */
export async function loadHttpsSettings(config: TlsConfig | undefined): Promise<HttpsSettings> {
  const settings: HttpsSettings = { rejectUnauthorized: config?.rejectUnauthorized ?? true };
  if (config?.caFile) settings.ca = await readPem('caFile', config.caFile);
  if (config?.certFile) settings.cert = await readPem('certFile', config.certFile);
  if (config?.keyFile) settings.key = await readPem('keyFile', config.keyFile);
  return settings;
}

/** Describes a request error without anything the peer sent. */
function describeError(error: unknown, url: URL): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const where = url.host;
  if (error instanceof EndocapError) return error.message;
  switch (code) {
    case 'ECONNREFUSED':
      return `connection to ${where} refused (ECONNREFUSED)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host name of ${where} could not be resolved (${code})`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `connection to ${where} closed by the server before a response (${code})`;
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return `TLS certificate of ${where} not trusted (${code}): set tls.caFile to the CA that signed it`;
    case 'CERT_HAS_EXPIRED':
    case 'CERT_NOT_YET_VALID':
      return `TLS certificate of ${where} is outside its validity period (${code})`;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `TLS certificate of ${where} does not name the host ${url.hostname} (${code}): use a url with a host name the certificate carries`;
    default:
      // OpenSSL's own message spans several lines and names source files, so a TLS failure shows only its code.
      if (code !== undefined && /^ERR_(SSL|TLS|OSSL)_/.test(code)) return `TLS handshake with ${where} failed (${code})`;
      return `request to ${where} failed: ${errorMessage(error)}${code ? ` (${code})` : ''}`;
  }
}

/**
 * Reads a response body. The body must end within `deadlineMs` of the
 * headers: the inactivity timeout alone would let a server that sends a
 * byte now and then hold the request open for ever.
 */
function readResponse(response: IncomingMessage, deadlineMs: number, host: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const deadline = setTimeout(() => {
      reject(new EndocapError(ErrorCodes.DICOMWEB_REQUEST_FAILED, `response of ${host} did not end within ${deadlineMs} ms of its headers`));
    }, deadlineMs);
    response.once('close', () => clearTimeout(deadline));
    response.on('data', (chunk: Buffer) => {
      if (length >= maxResponseBytes) return;
      chunks.push(chunk);
      length += chunk.length;
    });
    response.once('end', () => resolve(Buffer.concat(chunks)));
    response.once('error', reject);
    response.once('aborted', () => reject(new Error('connection closed before the end of the response')));
  });
}

/**
 * Posts a streamed body, or sends a GET without one, and reads the response. It never rejects. With
 * `expectContinue` the body waits for "100 Continue" (RFC 9110 10.1.1), so a
 * server that rejects the request (401, 413) can do so before a large clip is
 * uploaded. The connection is not reused.
 */
export function httpRequest(options: HttpRequestOptions): Promise<HttpRequestOutcome> {
  const { url, body, tls, signal } = options;
  return new Promise((resolve) => {
    let connected = false;
    let settled = false;
    let bodyStarted = false;
    let continueTimer: NodeJS.Timeout | undefined;

    const headers = options.expectContinue ? { ...options.headers, Expect: '100-continue' } : options.headers;
    const requestOptions = { method: body ? 'POST' : 'GET', headers, agent: false as const };
    const request: ClientRequest =
      url.protocol === 'https:'
        ? https.request(url, { ...requestOptions, ca: tls?.ca, cert: tls?.cert, key: tls?.key, rejectUnauthorized: tls?.rejectUnauthorized ?? true, minVersion: 'TLSv1.2' })
        : http.request(url, requestOptions);

    const connectTimer = setTimeout(() => {
      request.destroy(new EndocapError(ErrorCodes.DICOMWEB_REQUEST_FAILED, `connection to ${url.host} timed out after ${options.connectTimeoutMs} ms`));
    }, options.connectTimeoutMs);

    const onAbort = (): void => {
      request.destroy(new EndocapError(ErrorCodes.DICOMWEB_REQUEST_FAILED, 'sending stopped'));
    };
    signal.addEventListener('abort', onAbort, { once: true });

    function finish(outcome: HttpRequestOutcome): void {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(continueTimer);
      signal.removeEventListener('abort', onAbort);
      body?.unpipe(request);
      body?.destroy();
      request.destroy();
      resolve(outcome);
    }

    function sendBody(): void {
      if (bodyStarted || settled) return;
      bodyStarted = true;
      clearTimeout(continueTimer);
      if (!body) {
        request.end();
        return;
      }
      body.once('error', (error) => request.destroy(error));
      body.pipe(request);
    }

    request.on('socket', (socket) => {
      socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
        connected = true;
        clearTimeout(connectTimer);
        if (options.expectContinue) continueTimer = setTimeout(sendBody, continueWaitMs);
        else sendBody();
      });
    });
    request.setTimeout(options.requestTimeoutMs, () => {
      request.destroy(new EndocapError(ErrorCodes.DICOMWEB_REQUEST_FAILED, `request to ${url.host} made no progress for ${options.requestTimeoutMs} ms`));
    });
    request.on('continue', sendBody);
    request.on('response', (response) => {
      readResponse(response, options.requestTimeoutMs, url.host).then(
        (responseBody) => finish({ kind: 'response', status: response.statusCode ?? 0, contentType: response.headers['content-type'], body: responseBody }),
        (error: unknown) => finish({ kind: 'failed', connected, reason: describeError(error, url) }),
      );
    });
    request.on('error', (error) => finish({ kind: 'failed', connected, reason: describeError(error, url) }));
    if (signal.aborted) onAbort();
  });
}
