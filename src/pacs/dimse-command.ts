import { SopClassUid } from './service-tables.js';

/**
 * DIMSE command sets (PS3.7 9.3 and E.1): group 0000 elements, always
 * encoded in Implicit VR Little Endian, with (0000,0000) CommandGroupLength first.
 */

export const CommandField = {
  CStoreRq: 0x0001,
  CStoreRsp: 0x8001,
  CFindRq: 0x0020,
  CFindRsp: 0x8020,
  CEchoRq: 0x0030,
  CEchoRsp: 0x8030,
  NEventReportRq: 0x0100,
  NEventReportRsp: 0x8100,
  NActionRq: 0x0130,
  NActionRsp: 0x8130,
  CCancelRq: 0x0fff,
} as const;

export const CommandTag = {
  AffectedSopClassUid: 0x00000002,
  RequestedSopClassUid: 0x00000003,
  CommandField: 0x00000100,
  MessageId: 0x00000110,
  MessageIdBeingRespondedTo: 0x00000120,
  Priority: 0x00000700,
  CommandDataSetType: 0x00000800,
  Status: 0x00000900,
  ErrorComment: 0x00000902,
  AffectedSopInstanceUid: 0x00001000,
  RequestedSopInstanceUid: 0x00001001,
  EventTypeId: 0x00001002,
  ActionTypeId: 0x00001008,
} as const;

/** CommandDataSetType value meaning that no data set follows the command (PS3.7 E.1). */
export const noDataSet = 0x0101;

/** Pending statuses (PS3.4 C.4.1.1.4): FF00, and FF01 when optional keys were not supported. */
export function isPendingStatus(status: number): boolean {
  return status === 0xff00 || status === 0xff01;
}

export type CommandVr = 'UI' | 'US' | 'UL' | 'AE' | 'LO';

export interface CommandElement {
  tag: number;
  vr: CommandVr;
  value: string | number;
}

/** Length of an element's value as encoded: text padded to an even length (PS3.5 6.2). */
function valueLength(element: CommandElement): number {
  if (element.vr === 'US') return 2;
  if (element.vr === 'UL') return 4;
  const length = Buffer.byteLength(String(element.value), 'latin1');
  return length + (length % 2);
}

/** Encodes a command set; adds CommandGroupLength and sorts the elements by tag. */
export function encodeCommand(elements: CommandElement[]): Buffer {
  const sorted = [...elements].sort((a, b) => a.tag - b.tag);
  let groupLength = 0;
  for (const element of sorted) groupLength += 8 + valueLength(element);
  const bytes = Buffer.allocUnsafe(12 + groupLength);
  bytes.writeUInt32LE(0, 0);
  bytes.writeUInt32LE(4, 4);
  bytes.writeUInt32LE(groupLength, 8);
  let offset = 12;
  for (const element of sorted) {
    const length = valueLength(element);
    bytes.writeUInt16LE(element.tag >>> 16, offset);
    bytes.writeUInt16LE(element.tag & 0xffff, offset + 2);
    bytes.writeUInt32LE(length, offset + 4);
    offset += 8;
    if (element.vr === 'US') bytes.writeUInt16LE(Number(element.value), offset);
    else if (element.vr === 'UL') bytes.writeUInt32LE(Number(element.value), offset);
    else {
      const written = bytes.write(String(element.value), offset, 'latin1');
      // UI pads with NUL, text VRs with a space.
      if (written < length) bytes[offset + written] = element.vr === 'UI' ? 0x00 : 0x20;
    }
    offset += length;
  }
  return bytes;
}

/** A decoded command set; values are kept as bytes and read by VR on request. */
export class DecodedCommand {
  private constructor(private readonly values: Map<number, Buffer>) {}

  /** Parses an Implicit VR Little Endian command set. Throws an Error when an element runs past the end. */
  static decode(bytes: Buffer): DecodedCommand {
    const values = new Map<number, Buffer>();
    let offset = 0;
    while (offset + 8 <= bytes.length) {
      const tag = ((bytes.readUInt16LE(offset) << 16) | bytes.readUInt16LE(offset + 2)) >>> 0;
      const length = bytes.readUInt32LE(offset + 4);
      const end = offset + 8 + length;
      if (end > bytes.length) throw new Error(`command element (${tag.toString(16).padStart(8, '0')}) runs past the end of the command set`);
      values.set(tag, bytes.subarray(offset + 8, end));
      offset = end;
    }
    return new DecodedCommand(values);
  }

  has(tag: number): boolean {
    return this.values.has(tag);
  }

  uint16(tag: number): number | undefined {
    const value = this.values.get(tag);
    return value && value.length >= 2 ? value.readUInt16LE(0) : undefined;
  }

  text(tag: number): string | undefined {
    const value = this.values.get(tag);
    return value === undefined ? undefined : value.toString('latin1').replace(/[\0 ]+$/, '');
  }

  get commandField(): number | undefined {
    return this.uint16(CommandTag.CommandField);
  }

  get messageIdBeingRespondedTo(): number | undefined {
    return this.uint16(CommandTag.MessageIdBeingRespondedTo);
  }

  get status(): number | undefined {
    return this.uint16(CommandTag.Status);
  }

  /** True when a data set follows the command. */
  get hasDataSet(): boolean {
    const type = this.uint16(CommandTag.CommandDataSetType);
    return type !== undefined && type !== noDataSet;
  }
}

/** Elements of a C-STORE-RQ (PS3.7 9.3.1.1), without MessageID, which the association assigns. */
export function cStoreRequest(sopClassUid: string, sopInstanceUid: string): CommandElement[] {
  return [
    { tag: CommandTag.AffectedSopClassUid, vr: 'UI', value: sopClassUid },
    { tag: CommandTag.CommandField, vr: 'US', value: CommandField.CStoreRq },
    { tag: CommandTag.Priority, vr: 'US', value: 0 },
    { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0x0000 },
    { tag: CommandTag.AffectedSopInstanceUid, vr: 'UI', value: sopInstanceUid },
  ];
}

/** Elements of a C-ECHO-RQ (PS3.7 9.3.5.1). */
export function cEchoRequest(): CommandElement[] {
  return [
    { tag: CommandTag.AffectedSopClassUid, vr: 'UI', value: SopClassUid.Verification },
    { tag: CommandTag.CommandField, vr: 'US', value: CommandField.CEchoRq },
    { tag: CommandTag.CommandDataSetType, vr: 'US', value: noDataSet },
  ];
}

/** Elements of a C-FIND-RQ (PS3.7 9.3.2.1); the identifier follows as the data set. */
export function cFindRequest(sopClassUid: string): CommandElement[] {
  return [
    { tag: CommandTag.AffectedSopClassUid, vr: 'UI', value: sopClassUid },
    { tag: CommandTag.CommandField, vr: 'US', value: CommandField.CFindRq },
    { tag: CommandTag.Priority, vr: 'US', value: 0 },
    { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0x0000 },
  ];
}
