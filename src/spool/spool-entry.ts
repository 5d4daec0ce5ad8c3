import { z } from 'zod';
import type { DeliveryRecord, SpoolEntry } from './types.js';

/** Schema of a state file: the SpoolEntry of `types.ts`, checked when read back from disk. */
export const deliveryRecordSchema = z.object({
  state: z.enum(['queued', 'sending', 'stored', 'committed', 'set-aside']),
  attempts: z.number().int().nonnegative(),
  lastError: z.string().optional(),
  lastStatus: z.number().int().optional(),
  updatedAt: z.string(),
}) satisfies z.ZodType<DeliveryRecord>;

const spoolEntrySchema = z.object({
  id: z.string(),
  sopClassUid: z.string(),
  sopInstanceUid: z.string(),
  transferSyntaxUid: z.string(),
  bytes: z.number().int().nonnegative(),
  queuedAt: z.string(),
  deliveries: z.record(z.string(), deliveryRecordSchema),
}) satisfies z.ZodType<SpoolEntry>;

/** Parses a state file; returns undefined for text that is torn, not JSON, or not a SpoolEntry. */
export function parseSpoolEntry(text: string): SpoolEntry | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // A torn or empty file: the caller rebuilds the state from the object.
    return undefined;
  }
  const result = spoolEntrySchema.safeParse(json);
  return result.success ? result.data : undefined;
}

/**
 * True when the object needs nothing more from any destination: each record is
 * committed, or stored at a destination without Storage Commitment.
 * `commitment(name)` is false for destinations missing from the profile, since
 * nobody would request their commitment.
 */
export function isDone(entry: SpoolEntry, commitment: (destination: string) => boolean): boolean {
  const records = Object.entries(entry.deliveries);
  return records.length > 0 && records.every(([name, record]) => record.state === 'committed' || (record.state === 'stored' && !commitment(name)));
}

/** Time in ms since the epoch of the last delivery change: for a done object, when it became done. */
export function lastChangeTime(entry: SpoolEntry): number {
  let latest = Date.parse(entry.queuedAt);
  for (const record of Object.values(entry.deliveries)) {
    const time = Date.parse(record.updatedAt);
    if (time > latest) latest = time;
  }
  return Number.isNaN(latest) ? 0 : latest;
}

/** Copies an entry; faster than structuredClone for this flat shape, which the spool copies on every read and change. */
export function cloneEntry(entry: SpoolEntry): SpoolEntry {
  const deliveries: Record<string, DeliveryRecord> = {};
  for (const [name, record] of Object.entries(entry.deliveries)) deliveries[name] = { ...record };
  return { ...entry, deliveries };
}
