import { entryKey, type WorklistEntry } from './worklist-entry.js';

export type MatchField = 'accession-number' | 'patient-id';

export type MatchResult = { kind: 'one'; entry: WorklistEntry } | { kind: 'none' } | { kind: 'several'; count: number };

/**
 * Finds the entries whose accession number or patient ID (as `fields` selects)
 * equals `value` exactly, after trimming spaces. Entries that are the same
 * step (same key) count once.
 */
export function matchEntries(entries: readonly WorklistEntry[], value: string, fields: readonly MatchField[]): MatchResult {
  const wanted = value.trim();
  if (wanted === '') return { kind: 'none' };
  const found = new Map<string, WorklistEntry>();
  for (const entry of entries) {
    const accession = fields.includes('accession-number') && entry.accessionNumber.trim() === wanted;
    const patient = fields.includes('patient-id') && entry.patientId.trim() === wanted;
    if (accession || patient) found.set(entryKey(entry), entry);
  }
  return resultOf([...found.values()]);
}

/**
 * Entries of `stationAeTitle` (or of any station, when it is undefined)
 * whose scheduled start lies within the window around `now`, leaving out
 * those whose key is in `exclude` (exams already done).
 */
export function scheduledInWindow(
  entries: readonly WorklistEntry[],
  options: { now: Date; beforeMs: number; afterMs: number; stationAeTitle: string | undefined; exclude: ReadonlySet<string> },
): MatchResult {
  const found = new Map<string, WorklistEntry>();
  for (const entry of entries) {
    if (options.stationAeTitle !== undefined && entry.step.stationAeTitle !== '' && entry.step.stationAeTitle !== options.stationAeTitle) continue;
    const start = scheduledStart(entry);
    if (start === undefined) continue;
    const offset = start.getTime() - options.now.getTime();
    if (offset < -options.beforeMs || offset > options.afterMs) continue;
    const key = entryKey(entry);
    if (!options.exclude.has(key)) found.set(key, entry);
  }
  return resultOf([...found.values()]);
}

/** Scheduled start of the step in local time; undefined when its date is missing or invalid. */
export function scheduledStart(entry: WorklistEntry): Date | undefined {
  const date = /^(\d{4})(\d{2})(\d{2})$/.exec(entry.step.startDate);
  if (!date) return undefined;
  // TM is HH, HHMM or HHMMSS with an optional fraction (PS3.5 6.2); a missing time means midnight.
  const time = /^(\d{2})(\d{2})?(\d{2})?/.exec(entry.step.startTime) ?? [];
  const start = new Date(Number(date[1]), Number(date[2]) - 1, Number(date[3]), Number(time[1] ?? 0), Number(time[2] ?? 0), Number(time[3] ?? 0));
  return Number.isNaN(start.getTime()) ? undefined : start;
}

function resultOf(found: WorklistEntry[]): MatchResult {
  const [first] = found;
  if (found.length === 1 && first !== undefined) return { kind: 'one', entry: first };
  if (found.length === 0) return { kind: 'none' };
  return { kind: 'several', count: found.length };
}
