import { performance } from 'node:perf_hooks';
import { errorMessage } from '../errors.js';
import type { EchoResult } from '../pacs/store-scu.js';
import type { StowRsDestinationConfig } from '../profile/schema.js';
import { readAuthorization } from './credentials.js';
import { httpRequest, loadHttpsSettings } from './http-request.js';
import { studiesUrl } from './stow-rs.js';

/** Returns the QIDO-RS search URL of the connectivity check: at most one study, so the response stays small. */
export function echoUrl(destination: StowRsDestinationConfig): URL {
  const url = studiesUrl(destination.url);
  url.searchParams.set('limit', '1');
  return url;
}

/**
 * Checks a STOW-RS destination the way C-ECHO checks a DICOM one: a QIDO-RS
 * search (PS3.18 10.6) with the destination's credentials and TLS settings.
 * It proves that the server is reachable, trusts the credentials and serves
 * DICOMweb at the URL. It does not prove that STOW-RS is allowed, because no
 * object is sent.
 */
export async function echoStowRs(destination: StowRsDestinationConfig): Promise<EchoResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const url = echoUrl(destination);
  const headers: Record<string, string> = { Accept: 'application/dicom+json' };
  let tls;
  try {
    const authorization = await readAuthorization(destination.auth);
    if (authorization) headers['Authorization'] = authorization.header;
    if (url.protocol === 'https:') tls = await loadHttpsSettings(destination.tls);
  } catch (error) {
    return { ok: false, reason: errorMessage(error), ms: elapsed() };
  }

  const outcome = await httpRequest({
    url,
    headers,
    tls,
    connectTimeoutMs: destination.connectTimeoutMs,
    requestTimeoutMs: destination.requestTimeoutMs,
    signal: new AbortController().signal,
    expectContinue: false,
  });
  const ms = elapsed();
  if (outcome.kind === 'failed') return { ok: false, reason: outcome.reason, ms };
  const { status } = outcome;
  if (status === 200 || status === 204) return { ok: true, ms };
  if (status === 401 || status === 403) return { ok: false, reason: `credentials rejected: server answered HTTP ${status}; check auth of destination ${destination.name}`, ms };
  return { ok: false, reason: `server answered HTTP ${status} to a QIDO-RS search at ${url.pathname}: check url of destination ${destination.name}`, ms };
}
