import path from 'node:path';
import type { Logger } from '../log.js';
import { commitmentEnabled, type Profile } from '../profile/schema.js';
import { importObject, listQueue, readForExport, retryObjects, type ExportedObject, type ImportResult, type QueueItem, type RetryRequest, type RetryResult } from '../spool/queue-operations.js';
import { Spool } from '../spool/spool.js';
import type { DeliveryState } from '../spool/types.js';
import { ControlClient } from './control-client.js';

/** Queue operations of `endocap queue`, the same whether the daemon or the command itself owns the spool. */
export interface QueueBackend {
  /** `daemon` when requests go through the control socket, `spool` when the command opened the spool itself. */
  readonly via: 'daemon' | 'spool';
  list(state?: DeliveryState): Promise<QueueItem[]>;
  retry(request: RetryRequest): Promise<RetryResult>;
  export(id: string): Promise<ExportedObject>;
  import(part10: Buffer): Promise<ImportResult>;
  close(): Promise<void>;
}

/** Path of the daemon's control socket for a profile. */
export function controlSocketPath(profile: Profile): string {
  return path.join(profile.stateDirectory, 'control.sock');
}

/**
 * Uses the running daemon when its control socket accepts a connection.
 * Otherwise opens the spool under its lock, which throws SPOOL_LOCKED while
 * another process holds it.
 */
export async function openQueueBackend(profile: Profile, log: Logger): Promise<QueueBackend> {
  const client = await ControlClient.connect(controlSocketPath(profile));
  if (client !== undefined) return daemonBackend(client);

  const spool = new Spool({
    directory: profile.spool.directory,
    destinations: profile.destinations.map((destination) => ({ name: destination.name, commitment: commitmentEnabled(destination) })),
    retentionHours: profile.spool.retentionHours,
    maxBytes: profile.spool.maxBytes,
    minFreeBytes: profile.spool.minFreeBytes,
    log,
  });
  await spool.open();
  return spoolBackend(spool);
}

function daemonBackend(client: ControlClient): QueueBackend {
  return {
    via: 'daemon',
    list: async (state) => (await client.request(state === undefined ? { command: 'queue-list' } : { command: 'queue-list', state })).objects,
    retry: (request) => client.request({ command: 'queue-retry', ...request }),
    export: async (id) => {
      const { entry, part10 } = await client.request({ command: 'queue-export', id });
      return { entry, part10: Buffer.from(part10, 'base64') };
    },
    import: (part10) => client.request({ command: 'queue-import', part10: part10.toString('base64') }),
    close: async () => client.close(),
  };
}

function spoolBackend(spool: Spool): QueueBackend {
  return {
    via: 'spool',
    list: async (state) => listQueue(spool, state),
    retry: (request) => retryObjects(spool, request),
    export: (id) => readForExport(spool, id),
    import: (part10) => importObject(spool, part10),
    close: () => spool.close(),
  };
}
