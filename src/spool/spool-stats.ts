import type { SpoolAlarm } from './space-guard.js';
import type { SpoolEntry } from './types.js';

export interface DestinationStats {
  queued: number;
  /** Objects a sender has taken and not yet recorded a result for. */
  sending: number;
  setAside: number;
  /** Objects stored at a destination with Storage Commitment and not yet committed. */
  awaitingCommitment: number;
  /** Total size of the objects queued or sending, in bytes. */
  bytesQueued: number;
  /** ISO time the oldest queued or sending object was spooled, or null when there is none. */
  oldestQueuedAt: string | null;
}

export interface SpoolStats {
  /** Objects on disk, whatever their state. */
  objects: number;
  /** Total size of the objects on disk, in bytes. */
  bytes: number;
  /** Objects done for every destination and kept for re-sending until their retention ends or room is needed. */
  retained: number;
  retainedBytes: number;
  /** Alarms raised and not yet cleared. */
  alarms: SpoolAlarm[];
  /** One entry per configured destination. */
  destinations: Record<string, DestinationStats>;
}

export interface StatsInput {
  /** Entries oldest first. */
  entries: Iterable<SpoolEntry>;
  destinations: string[];
  isDone: (entry: SpoolEntry) => boolean;
  /** True for destinations with Storage Commitment. */
  commitment: (destination: string) => boolean;
  alarm: SpoolAlarm | undefined;
}

/** Counts objects per state and destination. Records of destinations missing from the profile are left out. */
export function collectStats(input: StatsInput): SpoolStats {
  const stats: SpoolStats = { objects: 0, bytes: 0, retained: 0, retainedBytes: 0, alarms: input.alarm ? [input.alarm] : [], destinations: {} };
  for (const name of input.destinations) {
    stats.destinations[name] = { queued: 0, sending: 0, setAside: 0, awaitingCommitment: 0, bytesQueued: 0, oldestQueuedAt: null };
  }
  for (const entry of input.entries) {
    stats.objects += 1;
    stats.bytes += entry.bytes;
    if (input.isDone(entry)) {
      stats.retained += 1;
      stats.retainedBytes += entry.bytes;
      continue;
    }
    for (const [name, record] of Object.entries(entry.deliveries)) {
      const destination = stats.destinations[name];
      if (destination === undefined) continue;
      if (record.state === 'queued' || record.state === 'sending') {
        if (record.state === 'queued') destination.queued += 1;
        else destination.sending += 1;
        destination.bytesQueued += entry.bytes;
        // Entries come oldest first, so the first one seen is the oldest.
        destination.oldestQueuedAt ??= entry.queuedAt;
      } else if (record.state === 'set-aside') {
        destination.setAside += 1;
      } else if (record.state === 'stored' && input.commitment(name)) {
        destination.awaitingCommitment += 1;
      }
    }
  }
  return stats;
}
