import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import dimse from 'dcmjs-dimse';
import type { association, requests } from 'dcmjs-dimse';
import { createLogger } from '../../src/log.js';
import { CommandTag } from '../../src/pacs/dimse-command.js';
import { routeLibraryLog } from '../../src/pacs/dimse.js';
import { MessageAssembler } from '../../src/pacs/message-assembler.js';
import { decodePData, PduReader, PduType } from '../../src/pacs/pdu.js';
import { PYTHON } from '../helpers/dicom-tools.js';

const { Scp, responses, constants } = dimse;
const run = promisify(execFile);

// dcmjs-dimse turns on every level of the shared loglevel logger; a silent logger turns it off.
routeLibraryLog(createLogger('silent'));

/** One MPPS message as the receiver got it: its raw data set is in `file`. */
export interface ReceivedMpps {
  kind: 'N-CREATE' | 'N-SET';
  sopInstanceUid: string;
  transferSyntaxUid: string;
  file: string;
}

export interface MppsReceiver {
  port: number;
  received: ReceivedMpps[];
  /** Status sent in the responses to the next requests; 0x0000 unless a test sets another. */
  status: number;
  stop(): Promise<void>;
}

/**
 * A fake MPPS SCP: Debian packages no MPPS server (DCMTK 3.6.7 and Orthanc
 * 1.10 have none), so this dcmjs-dimse Scp accepts N-CREATE and N-SET on
 * 127.0.0.1 and responds with `status`. The raw bytes of each data set are
 * taken from the socket (dcmjs would decode text in sequences as Latin-1)
 * and written to `directory`, to be decoded by pydicom, not by endocap code.
 */
export async function startMppsReceiver(directory: string, port = 0): Promise<MppsReceiver> {
  await mkdir(directory, { recursive: true });
  const sockets = new Set<net.Socket>();
  const state: MppsReceiver = {
    port: 0,
    received: [],
    status: 0x0000,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };

  class MppsScp extends Scp {
    override associationRequested(requested: InstanceType<typeof association.Association>): void {
      for (const { context } of requested.getPresentationContexts()) {
        const syntax = context.getTransferSyntaxUids().find((uid) => uid === '1.2.840.10008.1.2.1') ?? context.getTransferSyntaxUids()[0];
        context.setResult(constants.PresentationContextResult.Accept, syntax);
      }
      this.sendAssociationAccept();
    }

    override nCreateRequest(request: InstanceType<typeof requests.NCreateRequest>, callback: (response: InstanceType<typeof responses.NCreateResponse>) => void): void {
      const response = responses.NCreateResponse.fromRequest(request);
      response.setStatus(state.status);
      callback(response);
    }

    override nSetRequest(request: InstanceType<typeof requests.NSetRequest>, callback: (response: InstanceType<typeof responses.NSetResponse>) => void): void {
      const response = responses.NSetResponse.fromRequest(request);
      response.setStatus(state.status);
      callback(response);
    }

    override associationReleaseRequested(): void {
      this.sendAssociationReleaseResponse();
    }
  }

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    tapMessages(socket, directory, state.received);
    new MppsScp(socket, {});
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

/** Reads the same bytes as the Scp and writes every data set of an N-CREATE or N-SET request to a file. */
function tapMessages(socket: net.Socket, directory: string, received: ReceivedMpps[]): void {
  const reader = new PduReader(16 * 1024 * 1024);
  const assembler = new MessageAssembler(16 * 1024 * 1024);
  socket.on('data', (chunk: Buffer) => {
    for (const pdu of reader.push(chunk)) {
      if (pdu.type !== PduType.PDataTf) continue;
      for (const pdv of decodePData(pdu.body)) {
        const message = assembler.push(pdv);
        if (!message?.dataset) continue;
        const field = message.command.commandField;
        if (field !== 0x0140 && field !== 0x0120) continue;
        const kind = field === 0x0140 ? 'N-CREATE' : 'N-SET';
        const sopInstanceUid = message.command.text(field === 0x0140 ? CommandTag.AffectedSopInstanceUid : CommandTag.RequestedSopInstanceUid) ?? '';
        const file = path.join(directory, `${String(received.length).padStart(3, '0')}-${kind}.bin`);
        // The fake accepts Explicit VR Little Endian whenever it is proposed, as endocap does.
        received.push({ kind, sopInstanceUid, transferSyntaxUid: '1.2.840.10008.1.2.1', file });
        void writeFile(file, message.dataset);
      }
    }
  });
}

/** Decodes an MPPS data set file with pydicom and returns the attributes the tests check, as JSON. */
export async function decodeMpps(file: string, explicitVr = true): Promise<MppsDecoded> {
  const script = new URL('./read_mpps.py', import.meta.url).pathname;
  const { stdout } = await run(PYTHON, [script, file, explicitVr ? 'explicit' : 'implicit']);
  return JSON.parse(stdout) as MppsDecoded;
}

export interface MppsDecoded {
  SpecificCharacterSet: string;
  PerformedProcedureStepStatus: string;
  PerformedProcedureStepID: string;
  PatientName: string;
  PatientID: string;
  PatientBirthDate: string;
  Modality: string;
  ScheduledStep: { StudyInstanceUID: string; AccessionNumber: string; ScheduledProcedureStepID: string; ScheduledProcedureStepDescription: string } | null;
  PerformedSeries: Array<{ SeriesInstanceUID: string; References: Array<[string, string]> }>;
  DiscontinuationReason: string | null;
}
