import { readFile } from 'node:fs/promises';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import type { DestinationConfig } from '../profile/schema.js';

/** TLS settings of one destination with the PEM files read into memory. */
export interface TlsSettings {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Name checked against the peer's certificate and sent as SNI; the host when absent. */
  serverName?: string;
  rejectUnauthorized: boolean;
}

type TlsConfig = NonNullable<DestinationConfig['tls']>;

async function readPem(setting: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    // A missing file is usually fixed by an operator while objects wait, so it is retried.
    const code = (error as NodeJS.ErrnoException).code ?? errorMessage(error);
    throw new EndocapError(ErrorCodes.PACS_TLS_FAILED, `TLS ${setting} ${file} could not be read (${code})`, { retryable: true, cause: error });
  }
}

/**
 * Reads the PEM files of a destination's TLS settings, at every association so
 * that renewed certificates are picked up without a restart. Returns undefined
 * when TLS is off.
 */
export async function loadTlsSettings(config: TlsConfig | undefined): Promise<TlsSettings | undefined> {
  if (!config?.enabled) return undefined;
  const settings: TlsSettings = { rejectUnauthorized: config.rejectUnauthorized };
  if (config.caFile) settings.ca = await readPem('caFile', config.caFile);
  if (config.certFile) settings.cert = await readPem('certFile', config.certFile);
  if (config.keyFile) settings.key = await readPem('keyFile', config.keyFile);
  if (config.serverName) settings.serverName = config.serverName;
  return settings;
}

/** Opens a TCP connection with Nagle's algorithm off, or a TLS 1.2+ connection when `settings` is given. */
export function connectSocket(host: string, port: number, settings: TlsSettings | undefined): Socket {
  if (!settings) return net.connect({ host, port, noDelay: true });
  const socket = tls.connect({
    host,
    port,
    ca: settings.ca,
    cert: settings.cert,
    key: settings.key,
    // SNI must not carry an IP address (RFC 6066 3), and Node then checks the IP against the certificate.
    servername: settings.serverName ?? (net.isIP(host) ? undefined : host),
    rejectUnauthorized: settings.rejectUnauthorized,
    minVersion: 'TLSv1.2',
  });
  socket.setNoDelay(true);
  return socket;
}

/** OpenSSL verification results that mean the peer's certificate chain does not lead to a trusted CA. */
const untrustedCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
]);

/** TLS alerts a server sends when it wants a client certificate and got none it accepts. */
const clientCertificateAlerts = /ALERT_(CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED)$/;

/**
 * Translates a TLS error into a transient EndocapError whose message names the
 * cause and the setting to check, or returns undefined for an error that is not
 * about TLS.
 */
export function describeTlsError(error: NodeJS.ErrnoException, where: string, settings: TlsSettings, host: string): EndocapError | undefined {
  const code = error.code ?? '';
  const tlsError = (message: string): EndocapError => new EndocapError(ErrorCodes.PACS_TLS_FAILED, message, { retryable: true, cause: error });
  if (untrustedCodes.has(code)) {
    return tlsError(`TLS certificate of ${where} is not trusted (${code}): check tls.caFile`);
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return tlsError(`TLS certificate of ${where} does not match the name ${settings.serverName ?? host}: set tls.serverName to a name in the certificate`);
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return tlsError(`TLS certificate of ${where} is outside its validity period (${code})`);
  }
  if (clientCertificateAlerts.test(code)) {
    const problem = settings.cert ? 'rejected the client certificate in tls.certFile' : 'requires a client certificate: set tls.certFile and tls.keyFile';
    return tlsError(`TLS handshake with ${where} failed: the peer ${problem} (${code})`);
  }
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code.startsWith('ERR_OSSL_')) {
    return tlsError(`TLS handshake with ${where} failed (${code})`);
  }
  return undefined;
}
