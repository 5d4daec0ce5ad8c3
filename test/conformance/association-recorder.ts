import net from 'node:net';

/**
 * A-ASSOCIATE-RQ and -AC parsing written for the tests, independently of
 * src/pacs/pdu.ts, and a recording acceptor that stores every request it
 * receives and rejects it.
 */

export interface ProposedContextOnWire {
  id: number;
  abstractSyntaxUid: string;
  transferSyntaxUids: string[];
}

export interface AssociateRequestOnWire {
  calledAeTitle: string;
  callingAeTitle: string;
  applicationContextName: string;
  contexts: ProposedContextOnWire[];
  maxPduLength: number | undefined;
  implementationClassUid: string | undefined;
  implementationVersionName: string | undefined;
  /** Types of user information sub-items other than 0x51, 0x52 and 0x55, such as 0x54 (role selection) or 0x56 (extended negotiation). */
  otherUserItems: number[];
}

export interface ContextAnswerOnWire {
  id: number;
  result: number;
  transferSyntaxUid: string | undefined;
}

export interface AssociateAcceptOnWire {
  contexts: ContextAnswerOnWire[];
  maxPduLength: number | undefined;
  implementationClassUid: string | undefined;
  implementationVersionName: string | undefined;
  /** Role selection sub-items: abstract syntax, SCU role, SCP role. */
  roleSelections: Array<{ abstractSyntaxUid: string; scu: number; scp: number }>;
}

function text(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/[\0 ]+$/, '');
}

/** Splits a variable field into items of type (1 byte), reserved (1 byte), 16-bit length and value. */
function items(field: Buffer): Array<{ type: number; value: Buffer }> {
  const found: Array<{ type: number; value: Buffer }> = [];
  let offset = 0;
  while (offset + 4 <= field.length) {
    const length = field.readUInt16BE(offset + 2);
    found.push({ type: field[offset] ?? 0, value: field.subarray(offset + 4, offset + 4 + length) });
    offset += 4 + length;
  }
  if (offset !== field.length) throw new Error(`item list of ${field.length} bytes ends at ${offset}`);
  return found;
}

/** Parses the body (after the 6-byte header) of an A-ASSOCIATE-RQ (PS3.8 9.3.2). */
export function parseAssociateRequest(body: Buffer): AssociateRequestOnWire {
  const request: AssociateRequestOnWire = {
    calledAeTitle: text(body.subarray(4, 20)),
    callingAeTitle: text(body.subarray(20, 36)),
    applicationContextName: '',
    contexts: [],
    maxPduLength: undefined,
    implementationClassUid: undefined,
    implementationVersionName: undefined,
    otherUserItems: [],
  };
  for (const item of items(body.subarray(68))) {
    if (item.type === 0x10) request.applicationContextName = text(item.value);
    if (item.type === 0x20) {
      const context: ProposedContextOnWire = { id: item.value[0] ?? 0, abstractSyntaxUid: '', transferSyntaxUids: [] };
      for (const sub of items(item.value.subarray(4))) {
        if (sub.type === 0x30) context.abstractSyntaxUid = text(sub.value);
        if (sub.type === 0x40) context.transferSyntaxUids.push(text(sub.value));
      }
      request.contexts.push(context);
    }
    if (item.type === 0x50) {
      for (const sub of items(item.value)) {
        if (sub.type === 0x51) request.maxPduLength = sub.value.readUInt32BE(0);
        else if (sub.type === 0x52) request.implementationClassUid = text(sub.value);
        else if (sub.type === 0x55) request.implementationVersionName = text(sub.value);
        else request.otherUserItems.push(sub.type);
      }
    }
  }
  return request;
}

/** Parses the body of an A-ASSOCIATE-AC (PS3.8 9.3.3). */
export function parseAssociateAccept(body: Buffer): AssociateAcceptOnWire {
  const accept: AssociateAcceptOnWire = { contexts: [], maxPduLength: undefined, implementationClassUid: undefined, implementationVersionName: undefined, roleSelections: [] };
  for (const item of items(body.subarray(68))) {
    if (item.type === 0x21) {
      const syntax = items(item.value.subarray(4)).find((sub) => sub.type === 0x40);
      accept.contexts.push({ id: item.value[0] ?? 0, result: item.value[2] ?? 0, transferSyntaxUid: syntax === undefined ? undefined : text(syntax.value) });
    }
    if (item.type === 0x50) {
      for (const sub of items(item.value)) {
        if (sub.type === 0x51) accept.maxPduLength = sub.value.readUInt32BE(0);
        if (sub.type === 0x52) accept.implementationClassUid = text(sub.value);
        if (sub.type === 0x55) accept.implementationVersionName = text(sub.value);
        if (sub.type === 0x54) {
          const uidLength = sub.value.readUInt16BE(0);
          accept.roleSelections.push({ abstractSyntaxUid: text(sub.value.subarray(2, 2 + uidLength)), scu: sub.value[2 + uidLength] ?? -1, scp: sub.value[3 + uidLength] ?? -1 });
        }
      }
    }
  }
  return accept;
}

/** Reads one whole PDU from a socket and returns its type and body. */
export function readPdu(socket: net.Socket): Promise<{ type: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 6) return;
      const length = buffered.readUInt32BE(2);
      if (buffered.length < 6 + length) return;
      cleanup();
      resolve({ type: buffered[0] ?? 0, body: buffered.subarray(6, 6 + length) });
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`connection closed after ${buffered.length} bytes, before a whole PDU`));
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
  });
}

/** A-ASSOCIATE-RJ: rejected-permanent, source service user, no reason given (PS3.8 9.3.4). */
const associateReject = Buffer.from([0x03, 0, 0, 0, 0, 4, 0, 1, 1, 1]);

export interface AssociationRecorder {
  port: number;
  /** Every A-ASSOCIATE-RQ received, in order of arrival. */
  requests: AssociateRequestOnWire[];
  stop(): Promise<void>;
}

/** Listens on 127.0.0.1, records each A-ASSOCIATE-RQ, rejects it with A-ASSOCIATE-RJ and closes the connection. */
export async function startAssociationRecorder(): Promise<AssociationRecorder> {
  const requests: AssociateRequestOnWire[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    readPdu(socket).then(
      (pdu) => {
        if (pdu.type === 0x01) requests.push(parseAssociateRequest(pdu.body));
        socket.end(associateReject);
      },
      () => socket.destroy(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    requests,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
