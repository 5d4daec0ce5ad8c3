import type { SenderStatus } from '../pacs/sender.js';
import type { SpoolStats } from '../spool/spool-stats.js';
import { PAYLOAD_SCHEMA_VERSION, statusPayloadSchema, type DestinationStatusPayload, type StatusPayload, type SystemStatus } from './payloads.js';

/** What the daemon reports about its components; telemetry adds the rest. */
export interface StatusInput {
  startedAt: string;
  profileVersion: string;
  video: { signal: boolean; width?: number; height?: number; pixelFormat?: string; fps: number; framesDropped: number };
  footswitch: { kind: string; connected: boolean };
  /** Absent when the box has no barcode reader. */
  barcodeReader?: { connected: boolean };
  exam?: { active: boolean };
  /** Absent when no worklist is configured; cacheAgeSeconds is null before the first successful query. */
  worklist?: { cacheAgeSeconds: number | null };
  spool: SpoolStats;
  senders: SenderStatus[];
  /** Whether the last association attempt per destination succeeded; a destination not yet tried is absent. */
  links: Record<string, boolean>;
}

export interface StatusContext {
  boxId: string;
  softwareVersion: string;
  alarmIds: string[];
  mqtt: StatusPayload['mqtt'];
  system: SystemStatus;
  now: Date;
}

/** Builds the status document; only the fields its schema lists are kept. */
export function buildStatus(input: StatusInput, context: StatusContext): StatusPayload {
  const nowMs = context.now.getTime();
  const destinations: Record<string, DestinationStatusPayload> = {};
  let oldestUndelivered: string | null = null;
  for (const [name, stats] of Object.entries(input.spool.destinations)) {
    const sender = input.senders.find((candidate) => candidate.destination === name);
    if (stats.oldestQueuedAt !== null && (oldestUndelivered === null || stats.oldestQueuedAt < oldestUndelivered)) oldestUndelivered = stats.oldestQueuedAt;
    destinations[name] = {
      queued: stats.queued,
      sending: stats.sending,
      bytesQueued: stats.bytesQueued,
      setAside: stats.setAside,
      awaitingCommitment: stats.awaitingCommitment,
      oldestUndeliveredSeconds: ageSeconds(stats.oldestQueuedAt, nowMs),
      lastResult: sender?.lastResult ?? 'none',
      lastError: sender?.lastError ?? null,
      linkUp: input.links[name] ?? null,
      consecutiveFailures: sender?.consecutiveFailures ?? 0,
      nextAttemptAt: sender?.nextAttemptAt ?? null,
    };
  }

  return statusPayloadSchema.parse({
    schemaVersion: PAYLOAD_SCHEMA_VERSION,
    boxId: context.boxId,
    at: context.now.toISOString(),
    softwareVersion: context.softwareVersion,
    profileVersion: input.profileVersion,
    startedAt: input.startedAt,
    video: {
      signal: input.video.signal,
      width: input.video.width ?? null,
      height: input.video.height ?? null,
      pixelFormat: input.video.pixelFormat ?? null,
      fps: Math.round(input.video.fps * 10) / 10,
      framesDropped: input.video.framesDropped,
    },
    footswitch: { kind: input.footswitch.kind, connected: input.footswitch.connected },
    barcodeReader: { configured: input.barcodeReader !== undefined, connected: input.barcodeReader?.connected ?? false },
    exam: { active: input.exam?.active ?? false },
    worklist: { configured: input.worklist !== undefined, cacheAgeSeconds: input.worklist?.cacheAgeSeconds ?? null },
    spool: { objects: input.spool.objects, bytes: input.spool.bytes, oldestUndeliveredSeconds: ageSeconds(oldestUndelivered, nowMs) },
    destinations,
    alarms: context.alarmIds,
    mqtt: context.mqtt,
    system: context.system,
  });
}

/**
 * Returns the part of a status document whose change is published at once.
 * Measurements that move all the time (frame rate, ages, CPU, memory) wait
 * for the heartbeat, so a busy box does not publish on every sample.
 */
export function statusChangeKey(status: StatusPayload): string {
  const destinations = Object.entries(status.destinations).map(([name, destination]) => [
    name,
    destination.queued,
    destination.sending,
    destination.setAside,
    destination.awaitingCommitment,
    destination.lastResult,
    destination.linkUp,
  ]);
  return JSON.stringify([
    status.profileVersion,
    status.video.signal,
    status.video.width,
    status.video.height,
    status.video.pixelFormat,
    status.footswitch,
    status.barcodeReader,
    status.exam,
    status.worklist.configured,
    status.spool.objects,
    destinations,
    status.alarms,
    status.mqtt.flapping,
  ]);
}

function ageSeconds(since: string | null, nowMs: number): number | null {
  if (since === null) return null;
  const then = Date.parse(since);
  if (Number.isNaN(then)) return null;
  return Math.max(0, Math.round((nowMs - then) / 1000));
}
