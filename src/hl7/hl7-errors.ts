/** Acknowledgment codes of original mode (MSA-1, HL7 table 0008). */
export type AckCode = 'AA' | 'AE' | 'AR';

/** Message error condition codes (ERR-3, HL7 table 0357) that this listener sends. */
export const ErrorConditions = {
  segmentSequenceError: { code: '100', text: 'Segment sequence error' },
  requiredFieldMissing: { code: '101', text: 'Required field missing' },
  dataTypeError: { code: '102', text: 'Data type error' },
  tableValueNotFound: { code: '103', text: 'Table value not found' },
  unsupportedMessageType: { code: '200', text: 'Unsupported message type' },
  unsupportedEventCode: { code: '201', text: 'Unsupported event code' },
  applicationInternalError: { code: '207', text: 'Application internal error' },
} as const;

export type ErrorCondition = (typeof ErrorConditions)[keyof typeof ErrorConditions];

/** Position of the value an error is about (ERR-2, type ERL). */
export interface ErrorLocation {
  segment: string;
  field?: number;
}

/**
 * A message that cannot be accepted. `ack` is AE when the content is at fault
 * (a missing field, an unsupported character set), AR when the message as a
 * whole is rejected (not HL7, unsupported type). The message is sent back in
 * the ACK: it names fields, codes and limits, never a value that could be
 * patient data.
 */
export class Hl7Error extends Error {
  readonly ack: 'AE' | 'AR';
  readonly condition: ErrorCondition;
  readonly location: ErrorLocation | undefined;

  constructor(ack: 'AE' | 'AR', condition: ErrorCondition, message: string, location?: ErrorLocation) {
    super(message);
    this.name = 'Hl7Error';
    this.ack = ack;
    this.condition = condition;
    this.location = location;
  }
}
