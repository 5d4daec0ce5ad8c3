/** Encodes one item of an association PDU: type, a reserved byte, a 2-byte length and the value (PS3.8 9.3). */
export function pduItem(type: number, value: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header[0] = type;
  header.writeUInt16BE(value.length, 2);
  return Buffer.concat([header, value]);
}
