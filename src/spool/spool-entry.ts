import { z } from 'zod';
import type { DeliveryRecord, SpoolEntry } from './types.js';

/** Schema of a state file: the SpoolEntry of `types.ts`, checked when read back from disk. */
const deliveryRecordSchema = z.object({
  state: z.enum(['queued', 'stored', 'set-aside']),
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

/** True when every destination has stored the object, so it can be removed. */
export function isDelivered(entry: SpoolEntry): boolean {
  const records = Object.values(entry.deliveries);
  return records.length > 0 && records.every((record) => record.state === 'stored');
}

export function cloneEntry(entry: SpoolEntry): SpoolEntry {
  return structuredClone(entry);
}
