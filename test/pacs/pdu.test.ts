import t from 'tap';
import { CommandTag, DecodedCommand, cStoreRequest, encodeCommand, isPendingStatus } from '../../src/pacs/dimse-command.js';
import { MessageAssembler } from '../../src/pacs/message-assembler.js';
import {
  PduReader,
  PduType,
  decodeAbort,
  decodeAssociateAccept,
  decodePData,
  encodeAbort,
  encodeAssociateRequest,
  pDataHeader,
  type Pdv,
} from '../../src/pacs/pdu.js';

t.test('pdu A-ASSOCIATE-RQ layout', async (t) => {
  const pdu = encodeAssociateRequest({
    calledAeTitle: 'PACS',
    callingAeTitle: 'ENDOCAP',
    contexts: [{ id: 1, abstractSyntaxUid: '1.2.840.10008.1.1', transferSyntaxUids: ['1.2.840.10008.1.2'] }],
    maxPduLength: 65_536,
    implementationClassUid: '2.25.1',
    implementationVersionName: 'ENDOCAP_1',
  });
  t.equal(pdu[0], PduType.AssociateRq);
  t.equal(pdu.readUInt32BE(2), pdu.length - 6, 'PDU length counts the bytes after the header');
  t.equal(pdu.readUInt16BE(6), 1, 'protocol version 1');
  t.equal(pdu.toString('latin1', 10, 26), 'PACS            ', 'called AE title padded to 16 bytes');
  t.equal(pdu.toString('latin1', 26, 42), 'ENDOCAP         ', 'calling AE title padded to 16 bytes');
  t.equal(pdu[74], 0x10, 'application context item first');
  t.equal(pdu.toString('latin1', 78, 78 + pdu.readUInt16BE(76)), '1.2.840.10008.3.1.1.1');
  t.ok(pdu.includes(Buffer.from([0x51, 0x00, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00])), 'maximum length sub-item of 65536');
});

t.test('pdu A-ASSOCIATE-AC decoding', async (t) => {
  const transferSyntax = Buffer.from('1.2.840.10008.1.2\0', 'latin1');
  const context = Buffer.concat([Buffer.from([0x21, 0, 0, 4 + 4 + transferSyntax.length, 3, 0, 0, 0, 0x40, 0, 0, transferSyntax.length]), transferSyntax]);
  const rejected = Buffer.from([0x21, 0, 0, 4, 5, 0, 3, 0]);
  const userInformation = Buffer.from([0x50, 0, 0, 8, 0x51, 0, 0, 4, 0, 0, 0x40, 0]);
  const body = Buffer.concat([Buffer.alloc(68), context, rejected, userInformation]);
  t.same(decodeAssociateAccept(body), {
    contexts: [
      { id: 3, result: 0, transferSyntaxUid: '1.2.840.10008.1.2' },
      { id: 5, result: 3 },
    ],
    maxPduLength: 16_384,
  });
  t.throws(() => decodeAssociateAccept(Buffer.concat([Buffer.alloc(68), Buffer.from([0x21, 0, 0, 40, 1])])), /runs past the end/);
});

t.test('pdu reader splits and joins PDUs', async (t) => {
  const first = encodeAbort(2, 6);
  const header = pDataHeader(1, true, true, 3);
  const second = Buffer.concat([header, Buffer.from([1, 2, 3])]);
  const stream = Buffer.concat([first, second]);

  const reader = new PduReader(1024);
  const byteByByte = [...stream].flatMap((byte) => reader.push(Buffer.from([byte])));
  t.same(byteByByte.map((pdu) => pdu.type), [PduType.Abort, PduType.PDataTf], 'one byte at a time');
  t.same(decodeAbort(byteByByte[0]?.body ?? Buffer.alloc(0)), { source: 2, reason: 6 });

  const together = new PduReader(1024).push(stream);
  t.equal(together.length, 2, 'two PDUs in one chunk');
  const pdvs = decodePData(together[1]?.body ?? Buffer.alloc(0));
  t.same(pdvs.map((pdv) => ({ ...pdv, value: [...pdv.value] })), [{ contextId: 1, command: true, last: true, value: [1, 2, 3] }]);

  t.throws(() => new PduReader(1024).push(Buffer.from([0x09, 0, 0, 0, 0, 0])), /unknown PDU type 0x9/);
  t.throws(() => new PduReader(1024).push(Buffer.from([0x04, 0, 0, 0, 0x04, 0x01])), /PDU of 1025 bytes exceeds the limit of 1024/);
  t.throws(() => decodePData(Buffer.from([0, 0, 0, 9, 1, 3, 0])), /PDV length 9 does not fit/);
});

t.test('pdu P-DATA-TF header', async (t) => {
  const header = pDataHeader(7, false, true, 1000);
  t.same([...header], [0x04, 0, 0, 0, 0x03, 0xee, 0, 0, 0x03, 0xea, 7, 0x02], 'PDU length 1006, PDV length 1002, last data fragment');
});

t.test('dimse command round trip', async (t) => {
  const encoded = encodeCommand([...cStoreRequest('1.2.840.10008.5.1.4.1.1.77.1.1', '1.2.3'), { tag: CommandTag.MessageId, vr: 'US', value: 7 }]);
  t.equal(encoded.readUInt32LE(8), encoded.length - 12, 'CommandGroupLength counts the elements after it');
  const decoded = DecodedCommand.decode(encoded);
  t.equal(decoded.commandField, 0x0001);
  t.equal(decoded.uint16(CommandTag.MessageId), 7);
  t.equal(decoded.text(CommandTag.AffectedSopInstanceUid), '1.2.3', 'the NUL pad of an odd-length UID is removed');
  t.equal(decoded.hasDataSet, true);
  t.ok(encoded.includes(Buffer.from('1.2.3\0', 'latin1')), 'odd-length UID padded with NUL');
  t.throws(() => DecodedCommand.decode(encoded.subarray(0, encoded.length - 2)), /runs past the end/);
  t.same([0xff00, 0xff01, 0x0000, 0xfe00].map(isPendingStatus), [true, true, false, false]);

  // Implicit VR Little Endian, written out by hand from PS3.5 7.1.2 and PS3.7 E.1.
  const expected = Buffer.from([
    0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, // (0000,0000) UL 4: 34
    0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x00, // (0000,0100) US 2: 0x0030
    0x00, 0x00, 0x02, 0x09, 0x04, 0x00, 0x00, 0x00, 0x61, 0x62, 0x63, 0x20, // (0000,0902) LO 4: "abc" and a space
    0x00, 0x00, 0x00, 0x10, 0x04, 0x00, 0x00, 0x00, 0x31, 0x2e, 0x32, 0x00, // (0000,1000) UI 4: "1.2" and a NUL
  ]);
  const mixed = encodeCommand([
    { tag: CommandTag.AffectedSopInstanceUid, vr: 'UI', value: '1.2' },
    { tag: CommandTag.ErrorComment, vr: 'LO', value: 'abc' },
    { tag: CommandTag.CommandField, vr: 'US', value: 0x0030 },
  ]);
  t.same([...mixed], [...expected], 'elements sorted by tag, group length first, text padded to even lengths');
});

t.test('message assembler joins fragments', async (t) => {
  const assembler = new MessageAssembler(10);
  const command = encodeCommand([
    { tag: CommandTag.CommandField, vr: 'US', value: 0x8020 },
    { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0 },
  ]);
  const pdv = (value: Buffer, isCommand: boolean, last: boolean): Pdv => ({ contextId: 3, command: isCommand, last, value });
  t.equal(assembler.push(pdv(command.subarray(0, 5), true, false)), undefined);
  t.equal(assembler.push(pdv(command.subarray(5), true, true)), undefined, 'a data set follows the command');
  t.equal(assembler.push(pdv(Buffer.from([1, 2]), false, false)), undefined);
  const message = assembler.push(pdv(Buffer.from([3]), false, true));
  t.equal(message?.command.commandField, 0x8020);
  t.same([...(message?.dataset ?? [])], [1, 2, 3]);
  t.equal(message?.contextId, 3);

  t.throws(() => new MessageAssembler(10).push(pdv(Buffer.from([1]), false, true)), /data set fragment without a command/);
  const small = new MessageAssembler(2);
  small.push(pdv(command, true, true));
  t.throws(() => small.push(pdv(Buffer.from([1, 2, 3]), false, true)), /data set exceeds 2 bytes/);
});
