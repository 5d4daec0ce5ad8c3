import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import { describeTlsError, type TlsSettings } from './transport.js';

/** PS3.8 9.3.4, A-ASSOCIATE-RJ result, source and reason. */
const rejectReasons: Record<number, Record<number, string>> = {
  1: { 1: 'no reason given', 2: 'application context name not supported', 3: 'calling AE title not recognized', 7: 'called AE title not recognized' },
  2: { 1: 'no reason given', 2: 'protocol version not supported' },
  3: { 1: 'temporary congestion', 2: 'local limit exceeded' },
};

/** A-ASSOCIATE-RJ result 2: rejected transient (PS3.8 9.3.4). */
const rejectedTransient = 2;

/** Returns the reason text for an A-ASSOCIATE-RJ and whether the rejection is worth retrying. */
export function describeReject(result: number, source: number, reason: number): { message: string; retryable: boolean } {
  const kind = result === rejectedTransient ? 'transient' : 'permanent';
  const text = rejectReasons[source]?.[reason] ?? `reason ${reason} from source ${source}`;
  return { message: `association rejected (${kind}): ${text}`, retryable: result === rejectedTransient };
}

export interface SocketErrorContext {
  /** host:port, for messages. */
  where: string;
  host: string;
  tls: TlsSettings | undefined;
  /** True once the TCP connection was established. */
  connected: boolean;
  /** True once the association was accepted. */
  established: boolean;
}

/** Translates a socket error into a transient EndocapError whose message names the cause. */
export function translateSocketError(error: NodeJS.ErrnoException, context: SocketErrorContext): EndocapError {
  const { where } = context;
  if (context.tls) {
    const tlsError = describeTlsError(error, where, context.tls, context.host);
    if (tlsError) return tlsError;
    if (context.connected && !context.established && (error.code === 'ECONNRESET' || error.code === 'EPIPE')) {
      return new EndocapError(ErrorCodes.PACS_TLS_FAILED, `TLS handshake with ${where} failed: connection reset by the peer`, { retryable: true, cause: error });
    }
  }
  switch (error.code) {
    case 'ECONNREFUSED':
      return new EndocapError(ErrorCodes.PACS_CONNECT_FAILED, `connection refused by ${where}`, { retryable: true, cause: error });
    case 'ECONNRESET':
    case 'EPIPE':
      return new EndocapError(ErrorCodes.PACS_ABORTED, `connection reset by ${where}`, { retryable: true, cause: error });
    default:
      if (!context.connected) {
        return new EndocapError(ErrorCodes.PACS_CONNECT_FAILED, `connect to ${where} failed: ${error.code ?? errorMessage(error)}`, { retryable: true, cause: error });
      }
      return new EndocapError(ErrorCodes.PACS_ABORTED, `connection to ${where} failed: ${error.code ?? errorMessage(error)}`, { retryable: true, cause: error });
  }
}
