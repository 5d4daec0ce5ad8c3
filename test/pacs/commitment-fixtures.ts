import type { CommitmentQueue, DeliveryState, SpoolEntry } from '../../src/spool/types.js';

/** SOP Class UID of the objects in these tests: Secondary Capture, as img2dcm writes. */
export const secondaryCaptureUid = '1.2.840.10008.5.1.4.1.1.7';

/** UID root of the Transaction UIDs the tests generate. */
export const testUidRoot = '1.2.826.0.1.3680043.10.1437';

interface QueueCall {
  kind: 'committed' | 'requeued';
  id: string;
  destination: string;
  reason?: string;
}

/**
 * In-memory CommitmentQueue for unit tests of the commitment logic. The real
 * spool is a separate component with its own tests, and the Orthanc tests use it.
 */
export class MemoryCommitmentQueue implements CommitmentQueue {
  readonly entries = new Map<string, SpoolEntry>();
  readonly calls: QueueCall[] = [];

  /** Adds an object in `state` for `destination`, stored at `storedAt`. */
  add(id: string, sopInstanceUid: string, destination: string, state: DeliveryState = 'stored', storedAt = new Date()): SpoolEntry {
    const entry: SpoolEntry = {
      id,
      sopClassUid: secondaryCaptureUid,
      sopInstanceUid,
      transferSyntaxUid: '1.2.840.10008.1.2.4.50',
      bytes: 1_000,
      queuedAt: storedAt.toISOString(),
      deliveries: { [destination]: { state, attempts: 1, updatedAt: storedAt.toISOString() } },
    };
    this.entries.set(id, entry);
    return structuredClone(entry);
  }

  awaitingCommitment(destination: string): SpoolEntry[] {
    return [...this.entries.values()].filter((entry) => entry.deliveries[destination]?.state === 'stored').map((entry) => structuredClone(entry));
  }

  async markCommitted(id: string, destination: string): Promise<void> {
    this.setState(id, destination, 'committed');
    this.calls.push({ kind: 'committed', id, destination });
  }

  async requeue(id: string, destination: string, reason?: string): Promise<void> {
    this.setState(id, destination, 'queued', reason);
    this.calls.push({ kind: 'requeued', id, destination, reason });
  }

  get(id: string): SpoolEntry | undefined {
    const entry = this.entries.get(id);
    return entry === undefined ? undefined : structuredClone(entry);
  }

  state(id: string, destination: string): DeliveryState | undefined {
    return this.entries.get(id)?.deliveries[destination]?.state;
  }

  setState(id: string, destination: string, state: DeliveryState, reason?: string): void {
    const record = this.entries.get(id)?.deliveries[destination];
    if (!record) throw new Error(`no delivery of ${id} to ${destination}`);
    record.state = state;
    record.updatedAt = new Date().toISOString();
    if (reason !== undefined) record.lastError = reason;
  }
}

/** Polls `condition` every 20 ms until it holds or `timeoutMs` passes. */
export async function waitUntil(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
