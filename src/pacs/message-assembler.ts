import { DecodedCommand } from './dimse-command.js';
import { PduFormatError, type Pdv } from './pdu.js';

/** A complete DIMSE message received: its command and, when one followed, its data set. */
export interface ReceivedMessage {
  /** Presentation context the message arrived on. */
  contextId: number;
  command: DecodedCommand;
  dataset?: Buffer;
}

/**
 * Joins the PDV fragments of incoming DIMSE messages (PS3.8 E.2). Fragments of
 * one message arrive in order and are joined once, when the last one is in.
 */
export class MessageAssembler {
  private commandFragments: Buffer[] = [];
  private datasetFragments: Buffer[] = [];
  private datasetBytes = 0;
  private pending: { contextId: number; command: DecodedCommand } | undefined;

  /** @param maxDatasetBytes Largest data set accepted in one message. */
  constructor(private readonly maxDatasetBytes: number) {}

  /** Adds one PDV and returns the message it completes, if any. Throws PduFormatError for a broken sequence. */
  push(pdv: Pdv): ReceivedMessage | undefined {
    if (pdv.command) {
      if (this.pending) throw new PduFormatError('command fragment while a data set was expected');
      this.commandFragments.push(pdv.value);
      if (!pdv.last) return undefined;
      const command = DecodedCommand.decode(Buffer.concat(this.commandFragments));
      this.commandFragments = [];
      if (!command.hasDataSet) return { contextId: pdv.contextId, command };
      this.pending = { contextId: pdv.contextId, command };
      return undefined;
    }

    if (!this.pending) throw new PduFormatError('data set fragment without a command');
    if (pdv.contextId !== this.pending.contextId) throw new PduFormatError('data set fragment on another presentation context than its command');
    this.datasetBytes += pdv.value.length;
    if (this.datasetBytes > this.maxDatasetBytes) throw new PduFormatError(`data set exceeds ${this.maxDatasetBytes} bytes`);
    this.datasetFragments.push(pdv.value);
    if (!pdv.last) return undefined;

    const message: ReceivedMessage = { ...this.pending, dataset: Buffer.concat(this.datasetFragments, this.datasetBytes) };
    this.pending = undefined;
    this.datasetFragments = [];
    this.datasetBytes = 0;
    return message;
  }
}
