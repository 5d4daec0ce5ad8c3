/**
 * Stable error codes for everything endocap reports. A code never changes
 * meaning once released, so dashboards and runbooks can key on it.
 */
export const ErrorCodes = {
  PROFILE_INVALID: 'PROFILE_INVALID',
  PROFILE_UNREADABLE: 'PROFILE_UNREADABLE',
  VIDEO_OPEN_FAILED: 'VIDEO_OPEN_FAILED',
  VIDEO_SIGNAL_LOST: 'VIDEO_SIGNAL_LOST',
  VIDEO_NO_FRAME: 'VIDEO_NO_FRAME',
  STILL_ENCODE_FAILED: 'STILL_ENCODE_FAILED',
  SERIAL_OPEN_FAILED: 'SERIAL_OPEN_FAILED',
  SERIAL_PORT_BUSY: 'SERIAL_PORT_BUSY',
  DICOM_BUILD_FAILED: 'DICOM_BUILD_FAILED',
  SPOOL_WRITE_FAILED: 'SPOOL_WRITE_FAILED',
  SPOOL_CORRUPT_ENTRY: 'SPOOL_CORRUPT_ENTRY',
  PACS_CONNECT_FAILED: 'PACS_CONNECT_FAILED',
  PACS_TIMEOUT: 'PACS_TIMEOUT',
  PACS_ASSOCIATION_REJECTED: 'PACS_ASSOCIATION_REJECTED',
  PACS_ABORTED: 'PACS_ABORTED',
  PACS_NO_PRESENTATION_CONTEXT: 'PACS_NO_PRESENTATION_CONTEXT',
  PACS_STATUS_FAILURE: 'PACS_STATUS_FAILURE',
  MQTT_FAILED: 'MQTT_FAILED',
  PACS_INVALID_OBJECT: 'PACS_INVALID_OBJECT',
  SERIAL_DISCONNECTED: 'SERIAL_DISCONNECTED',
  SERIAL_MODEM_READ_FAILED: 'SERIAL_MODEM_READ_FAILED',
  DICOM_OBJECT_INVALID: 'DICOM_OBJECT_INVALID',
  SPOOL_UNKNOWN_OBJECT: 'SPOOL_UNKNOWN_OBJECT',
  SPOOL_FULL: 'SPOOL_FULL',
  SPOOL_LOCKED: 'SPOOL_LOCKED',
  CONTROL_REQUEST_FAILED: 'CONTROL_REQUEST_FAILED',
  COMMITMENT_UNSUPPORTED: 'COMMITMENT_UNSUPPORTED',
  COMMITMENT_STATE_FAILED: 'COMMITMENT_STATE_FAILED',
  COMMITMENT_LISTENER_FAILED: 'COMMITMENT_LISTENER_FAILED',
  PACS_TLS_FAILED: 'PACS_TLS_FAILED',
  IMAGE_AREA_INVALID: 'IMAGE_AREA_INVALID',
  CLIP_NO_SIGNAL: 'CLIP_NO_SIGNAL',
  CLIP_ENCODE_FAILED: 'CLIP_ENCODE_FAILED',
  CLIP_WRITE_FAILED: 'CLIP_WRITE_FAILED',
  CLIP_NOT_DICOM_COMPLIANT: 'CLIP_NOT_DICOM_COMPLIANT',
  MQTT_CONFIG_INVALID: 'MQTT_CONFIG_INVALID',
  COMMAND_UNKNOWN: 'COMMAND_UNKNOWN',
  COMMAND_INVALID: 'COMMAND_INVALID',
  COMMAND_FAILED: 'COMMAND_FAILED',
  COMMAND_BUSY: 'COMMAND_BUSY',
  COMMAND_UNAVAILABLE: 'COMMAND_UNAVAILABLE',
  WORKLIST_QUERY_FAILED: 'WORKLIST_QUERY_FAILED',
  WORKLIST_NOT_CONFIGURED: 'WORKLIST_NOT_CONFIGURED',
  WORKLIST_CACHE_FAILED: 'WORKLIST_CACHE_FAILED',
  EXAM_NO_MATCH: 'EXAM_NO_MATCH',
  EXAM_AMBIGUOUS: 'EXAM_AMBIGUOUS',
  EXAM_NOT_OPEN: 'EXAM_NOT_OPEN',
  EXAM_STATE_FAILED: 'EXAM_STATE_FAILED',
  MPPS_FAILED: 'MPPS_FAILED',
  MPPS_STATE_FAILED: 'MPPS_STATE_FAILED',
  HL7_LISTENER_FAILED: 'HL7_LISTENER_FAILED',
  HL7_ORDER_STORE_FAILED: 'HL7_ORDER_STORE_FAILED',
  DICOMWEB_CREDENTIALS_INVALID: 'DICOMWEB_CREDENTIALS_INVALID',
  DICOMWEB_REQUEST_FAILED: 'DICOMWEB_REQUEST_FAILED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface EndocapErrorOptions {
  /** The lower-level error that caused this one. */
  cause?: unknown;
  /** True when the same operation may succeed if tried again later. */
  retryable?: boolean;
}

/**
 * Error with a stable code. Messages must never contain patient data: they
 * name settings, paths, hosts and internal ids only.
 */
export class EndocapError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: EndocapErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EndocapError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** Returns the message of any thrown value, for logs and reasons. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
