/**
 * Encoding and decoding of the DICOM Upper Layer PDUs (PS3.8 9.3) that an
 * association requester sends and receives. P-DATA-TF payloads are written as
 * a small header plus a view into the caller's buffer, never copied.
 */

export const PduType = {
  AssociateRq: 0x01,
  AssociateAc: 0x02,
  AssociateRj: 0x03,
  PDataTf: 0x04,
  ReleaseRq: 0x05,
  ReleaseRp: 0x06,
  Abort: 0x07,
} as const;

/** DICOM Application Context Name (PS3.7 A.2.1). */
const applicationContextName = '1.2.840.10008.3.1.1.1';

/** Bytes before the variable items of A-ASSOCIATE-RQ and -AC: header, version, AE titles, reserved (PS3.8 9.3.2). */
const associateFixedLength = 6 + 68;

/** Bytes before a PDV's value: item length (4), presentation context ID (1), message control header (1). */
export const pdvHeaderLength = 6;

/** Bytes of a PDU header: type, reserved, length (PS3.8 9.3.1). */
export const pduHeaderLength = 6;

export interface PresentationContextProposal {
  /** Odd number from 1 to 255. */
  id: number;
  abstractSyntaxUid: string;
  transferSyntaxUids: string[];
}

export interface AssociateRequest {
  calledAeTitle: string;
  callingAeTitle: string;
  contexts: PresentationContextProposal[];
  /** Largest P-DATA-TF PDU this side accepts (variable field length, PS3.8 D.1). */
  maxPduLength: number;
  implementationClassUid: string;
  implementationVersionName: string;
}

/** Result/reason field of a presentation context item in A-ASSOCIATE-AC (PS3.8 9.3.3.2). */
export const PresentationContextResult = {
  Acceptance: 0,
  UserRejection: 1,
  NoReason: 2,
  AbstractSyntaxNotSupported: 3,
  TransferSyntaxesNotSupported: 4,
} as const;

export interface PresentationContextAnswer {
  id: number;
  result: number;
  /** Present when the context was accepted. */
  transferSyntaxUid?: string;
}

export interface AssociateAccept {
  contexts: PresentationContextAnswer[];
  /** The acceptor's maximum PDU length; 0 means no limit (PS3.8 D.1). */
  maxPduLength: number;
}

export interface AssociateReject {
  result: number;
  source: number;
  reason: number;
}

export interface AbortInfo {
  source: number;
  reason: number;
}

/** One presentation data value: a fragment of a command or of a data set. */
export interface Pdv {
  contextId: number;
  command: boolean;
  last: boolean;
  /** A view into the received PDU. */
  value: Buffer;
}

export class PduFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PduFormatError';
  }
}

function writeItem(type: number, value: Buffer): Buffer {
  const item = Buffer.alloc(4 + value.length);
  item[0] = type;
  item.writeUInt16BE(value.length, 2);
  value.copy(item, 4);
  return item;
}

function asciiItem(type: number, text: string): Buffer {
  return writeItem(type, Buffer.from(text, 'latin1'));
}

function aeTitleField(aeTitle: string): Buffer {
  // AE titles are 16 bytes, padded with spaces (PS3.8 9.3.2).
  return Buffer.from(aeTitle.padEnd(16, ' ').slice(0, 16), 'latin1');
}

function pduWithBody(type: number, body: Buffer): Buffer {
  const header = Buffer.alloc(pduHeaderLength);
  header[0] = type;
  header.writeUInt32BE(body.length, 2);
  return Buffer.concat([header, body]);
}

/** Encodes an A-ASSOCIATE-RQ PDU (PS3.8 9.3.2). */
export function encodeAssociateRequest(request: AssociateRequest): Buffer {
  const fixed = Buffer.alloc(associateFixedLength - pduHeaderLength);
  fixed.writeUInt16BE(0x0001, 0);
  aeTitleField(request.calledAeTitle).copy(fixed, 4);
  aeTitleField(request.callingAeTitle).copy(fixed, 20);

  const items: Buffer[] = [fixed, asciiItem(0x10, applicationContextName)];
  for (const context of request.contexts) {
    const head = Buffer.from([context.id, 0, 0, 0]);
    const syntaxes = context.transferSyntaxUids.map((uid) => asciiItem(0x40, uid));
    items.push(writeItem(0x20, Buffer.concat([head, asciiItem(0x30, context.abstractSyntaxUid), ...syntaxes])));
  }

  const maxLength = Buffer.alloc(4);
  maxLength.writeUInt32BE(request.maxPduLength, 0);
  const userInformation = Buffer.concat([
    writeItem(0x51, maxLength),
    asciiItem(0x52, request.implementationClassUid),
    asciiItem(0x55, request.implementationVersionName),
  ]);
  items.push(writeItem(0x50, userInformation));
  return pduWithBody(PduType.AssociateRq, Buffer.concat(items));
}

/** Encodes an A-RELEASE-RQ PDU (PS3.8 9.3.6). */
export function encodeReleaseRequest(): Buffer {
  return pduWithBody(PduType.ReleaseRq, Buffer.alloc(4));
}

/** Encodes an A-RELEASE-RP PDU (PS3.8 9.3.7). */
export function encodeReleaseResponse(): Buffer {
  return pduWithBody(PduType.ReleaseRp, Buffer.alloc(4));
}

/** Encodes an A-ABORT PDU (PS3.8 9.3.8); source 0 is the service user. */
export function encodeAbort(source = 0, reason = 0): Buffer {
  return pduWithBody(PduType.Abort, Buffer.from([0, 0, source, reason]));
}

/**
 * Returns the 12 bytes that precede one PDV of `valueLength` bytes in a
 * P-DATA-TF PDU that carries only that PDV (PS3.8 9.3.5 and E.2).
 */
export function pDataHeader(contextId: number, command: boolean, last: boolean, valueLength: number): Buffer {
  const header = Buffer.allocUnsafe(pduHeaderLength + pdvHeaderLength);
  header[0] = PduType.PDataTf;
  header[1] = 0;
  header.writeUInt32BE(pdvHeaderLength + valueLength, 2);
  header.writeUInt32BE(2 + valueLength, 6);
  header[10] = contextId;
  header[11] = (command ? 0x01 : 0) | (last ? 0x02 : 0);
  return header;
}

function readUidText(buffer: Buffer): string {
  // UIDs in items may carry a trailing NUL or space pad from some implementations.
  return buffer.toString('latin1').replace(/[\0 ]+$/, '');
}

/** Iterates over the items of a variable field: type, value. */
function* items(body: Buffer, start: number, pduName: string): Generator<[number, Buffer]> {
  let offset = start;
  while (offset < body.length) {
    if (offset + 4 > body.length) throw new PduFormatError(`${pduName}: item header runs past the end`);
    const type = body[offset] ?? 0;
    const length = body.readUInt16BE(offset + 2);
    const end = offset + 4 + length;
    if (end > body.length) throw new PduFormatError(`${pduName}: item 0x${type.toString(16)} runs past the end`);
    yield [type, body.subarray(offset + 4, end)];
    offset = end;
  }
}

/** Decodes the body (after the 6-byte header) of an A-ASSOCIATE-AC PDU (PS3.8 9.3.3). */
export function decodeAssociateAccept(body: Buffer): AssociateAccept {
  if (body.length < associateFixedLength - pduHeaderLength) throw new PduFormatError('A-ASSOCIATE-AC is shorter than its fixed fields');
  const accept: AssociateAccept = { contexts: [], maxPduLength: 0 };
  for (const [type, value] of items(body, associateFixedLength - pduHeaderLength, 'A-ASSOCIATE-AC')) {
    if (type === 0x21) {
      if (value.length < 4) throw new PduFormatError('A-ASSOCIATE-AC: presentation context item is too short');
      const answer: PresentationContextAnswer = { id: value[0] ?? 0, result: value[2] ?? 0 };
      for (const [subType, subValue] of items(value, 4, 'presentation context item')) {
        if (subType === 0x40) answer.transferSyntaxUid = readUidText(subValue);
      }
      accept.contexts.push(answer);
    } else if (type === 0x50) {
      for (const [subType, subValue] of items(value, 0, 'user information item')) {
        if (subType === 0x51 && subValue.length >= 4) accept.maxPduLength = subValue.readUInt32BE(0);
      }
    }
  }
  return accept;
}

/** Decodes the body of an A-ASSOCIATE-RJ PDU (PS3.8 9.3.4). */
export function decodeAssociateReject(body: Buffer): AssociateReject {
  if (body.length < 4) throw new PduFormatError('A-ASSOCIATE-RJ is shorter than 4 bytes');
  return { result: body[1] ?? 0, source: body[2] ?? 0, reason: body[3] ?? 0 };
}

/** Decodes the body of an A-ABORT PDU (PS3.8 9.3.8). */
export function decodeAbort(body: Buffer): AbortInfo {
  if (body.length < 4) throw new PduFormatError('A-ABORT is shorter than 4 bytes');
  return { source: body[2] ?? 0, reason: body[3] ?? 0 };
}

/** Decodes the PDVs of a P-DATA-TF PDU body (PS3.8 9.3.5); the values are views into `body`. */
export function decodePData(body: Buffer): Pdv[] {
  const pdvs: Pdv[] = [];
  let offset = 0;
  while (offset < body.length) {
    if (offset + pdvHeaderLength > body.length) throw new PduFormatError('P-DATA-TF: PDV header runs past the end');
    const length = body.readUInt32BE(offset);
    if (length < 2 || offset + 4 + length > body.length) throw new PduFormatError(`P-DATA-TF: PDV length ${length} does not fit the PDU`);
    const control = body[offset + 5] ?? 0;
    pdvs.push({
      contextId: body[offset + 4] ?? 0,
      command: (control & 0x01) !== 0,
      last: (control & 0x02) !== 0,
      value: body.subarray(offset + 6, offset + 4 + length),
    });
    offset += 4 + length;
  }
  return pdvs;
}

export interface RawPdu {
  type: number;
  /** The variable field after the 6-byte header. */
  body: Buffer;
}

/**
 * Splits a byte stream into PDUs. Received chunks are kept as they are and
 * joined once per PDU, only when a PDU spans chunks.
 */
export class PduReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** @param maxPduBytes Largest PDU body accepted; a longer one is a protocol error, not a memory allocation. */
  constructor(private readonly maxPduBytes: number) {}

  /** Adds received bytes and returns every PDU they complete. Throws PduFormatError for an impossible PDU. */
  push(chunk: Buffer): RawPdu[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const pdus: RawPdu[] = [];
    while (this.buffered >= pduHeaderLength) {
      const header = this.peek(pduHeaderLength);
      const type = header[0] ?? 0;
      if (type < PduType.AssociateRq || type > PduType.Abort) throw new PduFormatError(`unknown PDU type 0x${type.toString(16)}`);
      const length = header.readUInt32BE(2);
      if (length > this.maxPduBytes) throw new PduFormatError(`PDU of ${length} bytes exceeds the limit of ${this.maxPduBytes}`);
      if (this.buffered < pduHeaderLength + length) break;
      const whole = this.take(pduHeaderLength + length);
      pdus.push({ type, body: whole.subarray(pduHeaderLength) });
    }
    return pdus;
  }

  private peek(length: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= length) return first.subarray(0, length);
    return Buffer.concat(this.chunks, this.buffered).subarray(0, length);
  }

  private take(length: number): Buffer {
    const first = this.chunks[0];
    let pdu: Buffer;
    if (first && first.length >= length) {
      pdu = first.subarray(0, length);
      if (first.length === length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
    } else {
      const joined = Buffer.concat(this.chunks, this.buffered);
      pdu = joined.subarray(0, length);
      this.chunks = joined.length > length ? [joined.subarray(length)] : [];
    }
    this.buffered -= length;
    return pdu;
  }
}
