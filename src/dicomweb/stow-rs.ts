import { EventEmitter } from 'node:events';
import { Backoff } from '../backoff.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { TransferControl } from '../pacs/sender.js';
import type { LazyStoreObject, StoreResult } from '../pacs/store-scu.js';
import type { StowRsDestinationConfig } from '../profile/schema.js';
import type { SpooledObjectStream } from '../spool/types.js';
import { readAuthorization, type Authorization } from './credentials.js';
import { httpRequest, loadHttpsSettings, type HttpsSettings } from './http-request.js';
import { bufferPart, multipartBody } from './multipart.js';
import { parseStowResponse } from './stow-response.js';
import { judgeResponse, type DestinationFault } from './stow-status.js';

/** A fault of the destination that a person must fix, raised or cleared. */
export interface FaultChangedEvent {
  destination: string;
  kind: DestinationFault['kind'];
  active: boolean;
  reason?: string;
}

interface StowRsClientEvents {
  faultChanged: [FaultChangedEvent];
}

export interface StowRsClientOptions {
  destination: StowRsDestinationConfig;
  log: Logger;
  /**
   * First wait, in milliseconds, before credentials that the server rejected
   * are tried again unchanged; it doubles up to `credentialRetryMaxMs`. A
   * changed credential file is tried at the sender's next attempt.
   */
  credentialRetryMs?: number;
  credentialRetryMaxMs?: number;
}

interface OpenObject {
  object: LazyStoreObject;
  file: SpooledObjectStream;
}

/** Transfer syntaxes of video (MPEG-2, H.264, HEVC: 1.2.840.10008.1.2.4.100 to .108): such objects are posted alone. */
const videoTransferSyntax = /^1\.2\.840\.10008\.1\.2\.4\.10[0-8]$/;

/**
 * Requests at least this large ask for "100 Continue" before the body is sent.
 * That costs up to a second with servers that never send it, more than a
 * smaller body takes to upload on a hospital network.
 */
const expectContinueBytes = 1024 * 1024;

const defaultCredentialRetryMs = 5 * 60_000;
const defaultCredentialRetryMaxMs = 60 * 60_000;

/**
 * Sends spooled objects to a DICOMweb server with STOW-RS (PS3.18 10.5), as a
 * Transfer for the Sender. Part 10 files are posted as they are, streamed from
 * disk. After a 401 or 403 the same credentials are tried again only after a
 * long wait, so that a wrong token does not hammer the server. The credential
 * file is read again before every request, so a changed file is tried at once.
 */
export class StowRsClient extends EventEmitter<StowRsClientEvents> {
  private readonly destination: StowRsDestinationConfig;
  private readonly log: Logger;
  private readonly studiesUrl: URL;
  private readonly credentialBackoff: Backoff;
  private readonly faults = new Map<DestinationFault['kind'], string>();
  /** Credentials the server rejected, by fingerprint, and when they may be tried again. */
  private rejectedCredentials: { fingerprint: string; retryAt: number } | undefined;

  constructor(options: StowRsClientOptions) {
    super();
    this.destination = options.destination;
    this.log = options.log.child({ component: 'stow-rs', destination: options.destination.name });
    this.studiesUrl = studiesUrl(options.destination.url);
    const initialMs = options.credentialRetryMs ?? defaultCredentialRetryMs;
    this.credentialBackoff = new Backoff({ initialMs, maxMs: Math.max(initialMs, options.credentialRetryMaxMs ?? defaultCredentialRetryMaxMs) });
  }

  /** The URL objects are posted to; it carries no credentials, so it is safe to log. */
  get endpoint(): Record<string, unknown> {
    return { url: this.studiesUrl.href };
  }

  /** The Transfer for the Sender. It never rejects: an unexpected error is logged, and objects without a result stay queued. */
  readonly transfer = async (objects: LazyStoreObject[], control: TransferControl): Promise<StoreResult[]> => {
    const results: StoreResult[] = [];
    try {
      await this.sendAll(objects, control, results);
    } catch (error) {
      this.log.error({ err: error }, 'STOW-RS transfer failed unexpectedly');
      // Every object needs a recorded result, or the sender's queue keeps it as 'sending' until a restart.
      const done = new Set(results.map((result) => result.id));
      for (const object of objects) {
        if (done.has(object.id)) continue;
        const result: StoreResult = { id: object.id, outcome: 'transient', reason: `unexpected error: ${errorMessage(error)}` };
        results.push(result);
        await control.onResult(result);
      }
    }
    return results;
  };

  private async sendAll(objects: LazyStoreObject[], control: TransferControl, results: StoreResult[]): Promise<void> {
    const record = async (result: StoreResult): Promise<void> => {
      results.push(result);
      await control.onResult(result);
    };
    const failAll = async (pending: LazyStoreObject[], reason: string, associated?: boolean): Promise<void> => {
      for (const object of pending) await record(withAssociation({ id: object.id, outcome: 'transient', reason }, associated));
    };

    let authorization: Authorization | undefined;
    let tls: HttpsSettings | undefined;
    try {
      authorization = await readAuthorization(this.destination.auth);
      if (this.studiesUrl.protocol === 'https:') tls = await loadHttpsSettings(this.destination.tls);
    } catch (error) {
      const reason = errorMessage(error);
      if (error instanceof EndocapError && error.code === ErrorCodes.DICOMWEB_CREDENTIALS_INVALID) this.setFault('credentials', reason);
      else this.setFault('configuration', reason);
      await failAll(objects, reason);
      return;
    }

    const holdReason = this.credentialHold(authorization);
    if (holdReason !== undefined) {
      await failAll(objects, holdReason);
      return;
    }

    const groups = groupObjects(objects, this.destination.objectsPerRequest);
    while (groups.length > 0) {
      const group = groups.shift() ?? [];
      if (control.signal.aborted) {
        await failAll(group, 'sending stopped', true);
        continue;
      }
      const outcome = await this.post(group, authorization, tls, control.signal, record);
      if (outcome.retryEachAlone) groups.unshift(...group.map((object) => [object]));
      if (outcome.stop) {
        await failAll(groups.flat(), outcome.stop.reason, outcome.stop.associated);
        break;
      }
    }
  }

  /** Returns why sending must wait, while the server's rejection of these same credentials is recent. */
  private credentialHold(authorization: Authorization | undefined): string | undefined {
    const rejected = this.rejectedCredentials;
    const fingerprint = authorization?.fingerprint ?? 'none';
    if (!rejected || rejected.fingerprint !== fingerprint || Date.now() >= rejected.retryAt) return undefined;
    const when = new Date(rejected.retryAt).toISOString();
    return `credentials rejected by the server; tried again unchanged after ${when}, or at once when the credential file changes`;
  }

  /**
   * Posts one group and records a result for each of its objects, unless the
   * server rejected the group as a whole and each object must go again alone.
   */
  private async post(
    group: LazyStoreObject[],
    authorization: Authorization | undefined,
    tls: HttpsSettings | undefined,
    signal: AbortSignal,
    record: (result: StoreResult) => Promise<void>,
  ): Promise<{ retryEachAlone: boolean; stop?: { reason: string; associated?: boolean } }> {
    const opened = await this.openGroup(group, record);
    if (opened.length === 0) return { retryEachAlone: false };

    const body = multipartBody(opened.map(({ file }) => file));
    for (const { file } of opened) body.stream.once('close', () => file.stream.destroy());
    const headers: Record<string, string | number> = {
      'Content-Type': body.contentType,
      'Content-Length': body.contentLength,
      Accept: 'application/dicom+json',
    };
    if (authorization) headers['Authorization'] = authorization.header;

    this.log.debug({ objects: opened.length, bytes: body.contentLength }, 'posting STOW-RS request');
    const outcome = await httpRequest({
      url: this.studiesUrl,
      headers,
      body: body.stream,
      tls,
      connectTimeoutMs: this.destination.connectTimeoutMs,
      requestTimeoutMs: this.destination.requestTimeoutMs,
      signal,
      expectContinue: body.contentLength >= expectContinueBytes,
    });

    if (outcome.kind === 'failed') {
      for (const { object } of opened) await record({ id: object.id, outcome: 'transient', reason: outcome.reason, associated: outcome.connected });
      return { retryEachAlone: false, stop: { reason: outcome.reason, associated: outcome.connected } };
    }

    const verdict = judgeResponse({
      status: outcome.status,
      report: parseStowResponse(outcome.body, outcome.contentType),
      sopInstanceUids: opened.map(({ object }) => object.sopInstanceUid),
      destination: this.destination.name,
      requestBytes: body.contentLength,
      authenticated: authorization !== undefined,
    });
    this.log.debug({ status: outcome.status, objects: opened.length }, 'STOW-RS response');
    this.noteResponse(outcome.status, authorization, verdict.fault);

    if (verdict.retryEachAlone) {
      this.log.info({ status: outcome.status, objects: opened.length }, 'server rejected a request of several objects, sending each alone');
      return { retryEachAlone: true };
    }
    for (const [index, { object }] of opened.entries()) {
      const objectVerdict = verdict.objects[index] ?? { outcome: 'transient', reason: 'no verdict' };
      await record({ id: object.id, ...objectVerdict, associated: verdict.reachable });
    }
    if (!verdict.stopBatch) return { retryEachAlone: false };
    return { retryEachAlone: false, stop: { reason: verdict.objects[0]?.reason ?? `HTTP ${outcome.status}`, associated: verdict.reachable } };
  }

  /** Opens every object's file. An object that cannot be read gets its result here and is left out. */
  private async openGroup(group: LazyStoreObject[], record: (result: StoreResult) => Promise<void>): Promise<OpenObject[]> {
    const opened: OpenObject[] = [];
    for (const object of group) {
      try {
        const file = object.open ? await object.open() : bufferPart(await object.read());
        opened.push({ object, file });
      } catch (error) {
        const permanent = (error as NodeJS.ErrnoException).code === 'ENOENT' || (error instanceof EndocapError && !error.retryable);
        await record({ id: object.id, outcome: permanent ? 'permanent' : 'transient', reason: `reading the queued object failed: ${errorMessage(error)}` });
      }
    }
    return opened;
  }

  /** Updates the credential hold and the fault alarms after a response. */
  private noteResponse(status: number, authorization: Authorization | undefined, fault: DestinationFault | undefined): void {
    if (status === 401 || status === 403) {
      const delayMs = this.credentialBackoff.next();
      this.rejectedCredentials = { fingerprint: authorization?.fingerprint ?? 'none', retryAt: Date.now() + delayMs };
      this.log.warn({ status, retryUnchangedInMs: delayMs }, 'credentials rejected by the server');
    }
    if (status === 200 || status === 202) {
      this.rejectedCredentials = undefined;
      this.credentialBackoff.reset();
      this.clearFault('credentials');
      this.clearFault('configuration');
      return;
    }
    if (fault) this.setFault(fault.kind, fault.reason);
  }

  private setFault(kind: DestinationFault['kind'], reason: string): void {
    if (this.faults.get(kind) === reason) return;
    this.faults.set(kind, reason);
    this.log.warn({ fault: kind, reason }, 'destination fault raised');
    this.emitFault({ destination: this.destination.name, kind, active: true, reason });
  }

  private clearFault(kind: DestinationFault['kind']): void {
    if (!this.faults.delete(kind)) return;
    this.log.info({ fault: kind }, 'destination fault cleared');
    this.emitFault({ destination: this.destination.name, kind, active: false });
  }

  private emitFault(event: FaultChangedEvent): void {
    try {
      this.emit('faultChanged', event);
    } catch (error) {
      this.log.error({ err: error }, 'fault listener failed');
    }
  }
}

/** `<url>/studies`, whatever the base URL ends with. */
export function studiesUrl(base: string): URL {
  return new URL(`${base.replace(/\/+$/, '')}/studies`);
}

function withAssociation(result: StoreResult, associated: boolean | undefined): StoreResult {
  return associated === undefined ? result : { ...result, associated };
}

/** Splits a batch into requests: video objects alone, others in runs of up to `perRequest`, in queue order. */
export function groupObjects(objects: LazyStoreObject[], perRequest: number): LazyStoreObject[][] {
  const groups: LazyStoreObject[][] = [];
  let current: LazyStoreObject[] = [];
  for (const object of objects) {
    if (videoTransferSyntax.test(object.transferSyntaxUid)) {
      if (current.length > 0) groups.push(current);
      groups.push([object]);
      current = [];
      continue;
    }
    current.push(object);
    if (current.length >= perRequest) {
      groups.push(current);
      current = [];
    }
  }
  if (current.length > 0) groups.push(current);
  return groups;
}
