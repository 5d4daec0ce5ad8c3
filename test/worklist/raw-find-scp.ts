import { once } from 'node:events';
import net from 'node:net';
import { CommandTag, encodeCommand, type CommandElement } from '../../src/pacs/dimse-command.js';
import { MessageAssembler } from '../../src/pacs/message-assembler.js';
import { decodePData, encodeReleaseResponse, pDataHeader, PduReader, PduType } from '../../src/pacs/pdu.js';
import { pduItem } from '../helpers/pdu-item.js';

const EXPLICIT_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

/**
 * A fake worklist SCP that answers every C-FIND with data sets given as raw
 * bytes. It exists for the faults no real server produces on request:
 * malformed matches, step attributes at the top level, wrong character sets
 * in sequence items. It speaks just enough of the Upper Layer (PS3.8) for
 * one C-FIND per association, listens on 127.0.0.1 only and accepts every
 * presentation context in Explicit VR Little Endian.
 */
export async function startRawFindScp(options: { matches: Buffer[]; pendingStatus?: number }): Promise<{ port: number; queries: number; stop(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const state = { queries: 0 };
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const reader = new PduReader(1024 * 1024);
    const assembler = new MessageAssembler(1024 * 1024);
    socket.on('data', (chunk: Buffer) => {
      for (const pdu of reader.push(chunk)) {
        if (pdu.type === PduType.AssociateRq) socket.write(associateAccept(pdu.body));
        else if (pdu.type === PduType.ReleaseRq) socket.end(encodeReleaseResponse());
        else if (pdu.type === PduType.PDataTf) {
          for (const pdv of decodePData(pdu.body)) {
            const message = assembler.push(pdv);
            if (!message?.dataset) continue;
            state.queries += 1;
            const messageId = message.command.uint16(CommandTag.MessageId) ?? 1;
            for (const match of options.matches) {
              writeMessage(socket, message.contextId, response(messageId, options.pendingStatus ?? 0xff00, true), match);
            }
            writeMessage(socket, message.contextId, response(messageId, 0x0000, false));
          }
        } else socket.destroy();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    get queries() {
      return state.queries;
    },
    async stop() {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

function response(messageId: number, status: number, withDataset: boolean): CommandElement[] {
  return [
    { tag: CommandTag.AffectedSopClassUid, vr: 'UI', value: '1.2.840.10008.5.1.4.31' },
    { tag: CommandTag.CommandField, vr: 'US', value: 0x8020 },
    { tag: CommandTag.MessageIdBeingRespondedTo, vr: 'US', value: messageId },
    { tag: CommandTag.CommandDataSetType, vr: 'US', value: withDataset ? 0x0000 : 0x0101 },
    { tag: CommandTag.Status, vr: 'US', value: status },
  ];
}

function writeMessage(socket: net.Socket, contextId: number, command: CommandElement[], dataset?: Buffer): void {
  const encoded = encodeCommand(command);
  socket.write(Buffer.concat([pDataHeader(contextId, true, true, encoded.length), encoded]));
  if (dataset) socket.write(Buffer.concat([pDataHeader(contextId, false, true, dataset.length), dataset]));
}

/** Builds an A-ASSOCIATE-AC that accepts every proposed context in Explicit VR Little Endian. */
function associateAccept(requestBody: Buffer): Buffer {
  const fixed = Buffer.from(requestBody.subarray(0, 68));
  const items: Buffer[] = [pduItem(0x10, Buffer.from('1.2.840.10008.3.1.1.1', 'latin1'))];
  let offset = 68;
  while (offset + 4 <= requestBody.length) {
    const type = requestBody[offset] ?? 0;
    const length = requestBody.readUInt16BE(offset + 2);
    if (type === 0x20) {
      const contextId = requestBody[offset + 4] ?? 1;
      items.push(pduItem(0x21, Buffer.concat([Buffer.from([contextId, 0, 0, 0]), pduItem(0x40, Buffer.from(EXPLICIT_LITTLE_ENDIAN, 'latin1'))])));
    }
    offset += 4 + length;
  }
  const maxLength = Buffer.alloc(4);
  maxLength.writeUInt32BE(16_384);
  items.push(pduItem(0x50, Buffer.concat([pduItem(0x51, maxLength), pduItem(0x52, Buffer.from('1.2.826.0.1.3680043.10.1437.99', 'latin1'))])));
  const body = Buffer.concat([fixed, ...items]);
  const header = Buffer.alloc(6);
  header[0] = PduType.AssociateAc;
  header.writeUInt32BE(body.length, 2);
  return Buffer.concat([header, body]);
}
