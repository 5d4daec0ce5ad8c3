import net from 'node:net';
import { CommandTag, DecodedCommand, encodeCommand } from '../../src/pacs/dimse-command.js';
import { PduReader, PduType, decodePData, encodeReleaseResponse, pDataHeader } from '../../src/pacs/pdu.js';
import { listenOnLoopback } from './peers.js';
import { pduItem } from '../helpers/pdu-item.js';

/** What the early-response SCP saw, in order of arrival. */
export interface EarlyResponseLog {
  messageIds: number[];
  sopInstanceUids: string[];
  /** Bytes of each data set, once its last fragment arrived. */
  datasetBytes: number[];
  /** Protocol faults seen: a command fragment inside a data set, a data fragment without a command. */
  faults: string[];
}

/** Builds an A-ASSOCIATE-AC that accepts each proposed context in its first transfer syntax (PS3.8 9.3.3). */
function acceptAll(request: Buffer): Buffer {
  const items = [pduItem(0x10, Buffer.from('1.2.840.10008.3.1.1.1', 'latin1'))];
  // Items follow 68 bytes of fixed fields.
  for (let offset = 68; offset + 4 <= request.length; offset += 4 + request.readUInt16BE(offset + 2)) {
    if (request[offset] !== 0x20) continue;
    const end = offset + 4 + request.readUInt16BE(offset + 2);
    let syntax: Buffer | undefined;
    for (let sub = offset + 8; sub + 4 <= end && syntax === undefined; sub += 4 + request.readUInt16BE(sub + 2)) {
      if (request[sub] === 0x40) syntax = request.subarray(sub + 4, sub + 4 + request.readUInt16BE(sub + 2));
    }
    items.push(pduItem(0x21, Buffer.concat([Buffer.from([request[offset + 4] ?? 1, 0, 0, 0]), pduItem(0x40, syntax ?? Buffer.alloc(0))])));
  }
  const maxLength = Buffer.alloc(4);
  maxLength.writeUInt32BE(16_384);
  items.push(pduItem(0x50, Buffer.concat([pduItem(0x51, maxLength), pduItem(0x52, Buffer.from('1.2.826.0.1.3680043.10.1437.99.9', 'latin1'))])));
  const body = Buffer.concat([request.subarray(0, 68), ...items]);
  const header = Buffer.alloc(6);
  header[0] = PduType.AssociateAc;
  header.writeUInt32BE(body.length, 2);
  return Buffer.concat([header, body]);
}

/**
 * Starts a C-STORE SCP on 127.0.0.1 that responds as soon as a request's
 * command arrives, before its data set, with `status(n)` for the n-th
 * request. No real peer does so on request. It is built from endocap's own
 * PDU and command code, so it tests the order of messages, not their encoding.
 */
export async function startEarlyResponseScp(status: (index: number) => number): Promise<{ port: number; log: EarlyResponseLog; stop: () => Promise<void> }> {
  const log: EarlyResponseLog = { messageIds: [], sopInstanceUids: [], datasetBytes: [], faults: [] };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const reader = new PduReader(8 * 1024 * 1024);
    let commandFragments: Buffer[] = [];
    let datasetBytes: number | undefined;
    const respond = (contextId: number, messageId: number, value: number): void => {
      const response = encodeCommand([
        { tag: CommandTag.CommandField, vr: 'US', value: 0x8001 },
        { tag: CommandTag.MessageIdBeingRespondedTo, vr: 'US', value: messageId },
        { tag: CommandTag.CommandDataSetType, vr: 'US', value: 0x0101 },
        { tag: CommandTag.Status, vr: 'US', value },
      ]);
      socket.write(Buffer.concat([pDataHeader(contextId, true, true, response.length), response]));
    };
    socket.on('data', (chunk: Buffer) => {
      for (const pdu of reader.push(chunk)) {
        if (pdu.type === PduType.AssociateRq) socket.write(acceptAll(pdu.body));
        else if (pdu.type === PduType.ReleaseRq) socket.end(encodeReleaseResponse());
        else if (pdu.type !== PduType.PDataTf) socket.destroy();
        else {
          for (const pdv of decodePData(pdu.body)) {
            if (!pdv.command) {
              if (datasetBytes === undefined) log.faults.push('data fragment without a command');
              datasetBytes = (datasetBytes ?? 0) + pdv.value.length;
              if (pdv.last) {
                log.datasetBytes.push(datasetBytes);
                datasetBytes = undefined;
              }
              continue;
            }
            if (datasetBytes !== undefined) log.faults.push(`command fragment inside the data set of message ${log.messageIds.at(-1)}`);
            commandFragments.push(Buffer.from(pdv.value));
            if (!pdv.last) continue;
            const command = DecodedCommand.decode(Buffer.concat(commandFragments));
            commandFragments = [];
            const messageId = command.uint16(CommandTag.MessageId) ?? 0;
            log.messageIds.push(messageId);
            log.sopInstanceUids.push(command.text(CommandTag.AffectedSopInstanceUid) ?? '');
            datasetBytes = 0;
            respond(pdv.contextId, messageId, status(log.messageIds.length - 1));
          }
        }
      }
    });
  });
  return { ...(await listenOnLoopback(server, sockets)), log };
}
