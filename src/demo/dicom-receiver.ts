import { EventEmitter } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import dimse from 'dcmjs-dimse';
import { part10FromDataset } from '../dicom/part10-file.js';
import { H264_TRANSFER_SYNTAXES } from '../dicom/video-transfer-syntax.js';
import type { Logger } from '../log.js';

const { Scp, responses, constants } = dimse;
const { CEchoResponse, CStoreResponse } = responses;
const { Status, PresentationContextResult, SopClass, StorageClass } = constants;

/** Transfer syntaxes the demo receiver accepts as they are, without transcoding. */
const ACCEPTED_TRANSFER_SYNTAXES = new Set([
  '1.2.840.10008.1.2.4.50', // JPEG Baseline
  '1.2.840.10008.1.2.1', // Explicit VR Little Endian
  '1.2.840.10008.1.2', // Implicit VR Little Endian
  ...H264_TRANSFER_SYNTAXES, // MPEG-4 AVC/H.264 clips
]);

interface ReceiverEvents {
  objectReceived: [{ file: string; sopInstanceUid: string }];
}

/**
 * A minimal C-STORE SCP standing in for PACS in the demo: it writes every
 * object it receives to a folder. It listens on 127.0.0.1 only (dcmjs-dimse's
 * own Server binds every interface, so the socket is accepted here and handed
 * to its Scp class). Not meant for production use.
 */
export class DemoDicomReceiver extends EventEmitter<ReceiverEvents> {
  private readonly directory: string;
  private readonly aeTitle: string;
  private readonly log: Logger;
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(options: { directory: string; aeTitle: string; log: Logger }) {
    super();
    this.directory = options.directory;
    this.aeTitle = options.aeTitle;
    this.log = options.log.child({ component: 'demo-receiver' });
  }

  /** Starts listening on 127.0.0.1 and returns the port. */
  async start(port = 0): Promise<number> {
    await mkdir(this.directory, { recursive: true });
    const receiver = this;
    class ReceiverScp extends Scp {
      /** Encoded data set of the C-STORE in progress, kept so that it is written unchanged. */
      private received: { dataset: Buffer; transferSyntaxUid: string } | undefined;

      override createDatasetFromStoreWritableStream(
        ...args: Parameters<InstanceType<typeof Scp>['createDatasetFromStoreWritableStream']>
      ): ReturnType<InstanceType<typeof Scp>['createDatasetFromStoreWritableStream']> {
        const [writable, context] = args;
        this.received = { dataset: (writable as unknown as { toBuffer(): Buffer }).toBuffer(), transferSyntaxUid: context.getAcceptedTransferSyntaxUid() ?? '' };
        return super.createDatasetFromStoreWritableStream(...args);
      }

      override associationRequested(association: InstanceType<typeof dimse.association.Association>): void {
        for (const context of association.getPresentationContexts()) {
          const presentationContext = association.getPresentationContext(context.id);
          const abstractSyntax = presentationContext.getAbstractSyntaxUid();
          const storage = Object.values(StorageClass).includes(abstractSyntax) || abstractSyntax.startsWith('1.2.840.10008.5.1.4.1.1.');
          if (abstractSyntax !== SopClass.Verification && !storage) {
            presentationContext.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
            continue;
          }
          const transferSyntax = presentationContext.getTransferSyntaxUids().find((uid) => ACCEPTED_TRANSFER_SYNTAXES.has(uid));
          if (transferSyntax) presentationContext.setResult(PresentationContextResult.Accept, transferSyntax);
          else presentationContext.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
        }
        this.sendAssociationAccept();
      }

      override cEchoRequest(request: InstanceType<typeof dimse.requests.CEchoRequest>, callback: (response: InstanceType<typeof CEchoResponse>) => void): void {
        const response = CEchoResponse.fromRequest(request);
        response.setStatus(Status.Success);
        callback(response);
      }

      override cStoreRequest(request: InstanceType<typeof dimse.requests.CStoreRequest>, callback: (response: InstanceType<typeof CStoreResponse>) => void): void {
        const response = CStoreResponse.fromRequest(request);
        const sopInstanceUid = request.getAffectedSopInstanceUid();
        const file = path.join(receiver.directory, `${sopInstanceUid}.dcm`);
        const received = this.received;
        this.received = undefined;
        if (received === undefined) {
          receiver.log.error({}, 'received object has no data set');
          response.setStatus(Status.ProcessingFailure);
          callback(response);
          return;
        }
        const part10 = part10FromDataset(request.getAffectedSopClassUid(), sopInstanceUid, received.transferSyntaxUid, received.dataset);
        writeFile(file, part10).then(
          () => {
            response.setStatus(Status.Success);
            receiver.emit('objectReceived', { file, sopInstanceUid });
            callback(response);
          },
          (error: unknown) => {
            receiver.log.error({ err: error }, 'received object not written');
            response.setStatus(Status.ProcessingFailure);
            callback(response);
          },
        );
      }

      override associationReleaseRequested(): void {
        this.sendAssociationReleaseResponse();
      }
    }

    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.setNoDelay(true);
      const scp = new ReceiverScp(socket, {});
      scp.on('networkError', (error: Error) => this.log.warn({ err: { message: error.message } }, 'demo receiver network error'));
    });
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(port, '127.0.0.1', () => resolve());
    });
    const address = this.server.address() as net.AddressInfo;
    this.log.info({ port: address.port, aeTitle: this.aeTitle }, 'demo receiver listening');
    return address.port;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
