import { z } from 'zod';

/**
 * JSON payloads published by telemetry. Each outgoing document is parsed with
 * its schema before it is sent: zod drops every key a schema does not list,
 * so a field added by mistake (a patient name, say) never reaches the broker.
 * docs/mqtt.md shows an example of each, and a test checks the examples
 * against these schemas.
 */

/** Version of every JSON payload; bumped on incompatible changes. Version 1 had a flat status document. */
export const PAYLOAD_SCHEMA_VERSION = 2;

/** Longest reason text sent, in characters; longer ones are cut. */
export const MAX_REASON_LENGTH = 200;

const reason = z.string().transform((text) => (text.length > MAX_REASON_LENGTH ? `${text.slice(0, MAX_REASON_LENGTH - 3)}...` : text));
const count = z.number().int().nonnegative();
const isoTime = z.string();

export const severitySchema = z.enum(['critical', 'warning']);
export type Severity = z.infer<typeof severitySchema>;

export const eventTypes = [
  'still-captured',
  'capture-failed',
  'object-stored',
  'store-failed',
  'object-set-aside',
  'video-signal-lost',
  'video-signal-acquired',
  'footswitch-connected',
  'footswitch-disconnected',
  'alarm-raised',
  'alarm-cleared',
  'object-committed',
  'commitment-failed',
  'commitment-unsupported',
  'commitment-supported',
  'clip-started',
  'clip-captured',
  'clip-failed',
  'exam-started',
  'exam-ended',
] as const;

export const eventTypeSchema = z.enum(eventTypes);
export type EventType = z.infer<typeof eventTypeSchema>;

/** Fields an event may carry: internal ids, counts and reasons only. */
export const eventFieldsSchema = z.object({
  type: eventTypeSchema,
  /** Alarm id, such as `spool-full`, for alarm events. */
  id: z.string().optional(),
  severity: severitySchema.optional(),
  objectId: z.string().optional(),
  destination: z.string().optional(),
  /** DIMSE status of a response, for delivery events. */
  status: z.number().int().optional(),
  reason: reason.optional(),
  bytes: count.optional(),
  /** Internal clip id and file number, for clip events. */
  clipId: z.string().optional(),
  part: count.optional(),
  /** Internal exam id, for exam events. */
  examId: z.string().optional(),
});

export type TelemetryEvent = z.input<typeof eventFieldsSchema>;

export const eventPayloadSchema = eventFieldsSchema.extend({
  schemaVersion: z.literal(PAYLOAD_SCHEMA_VERSION),
  boxId: z.string(),
  /** Unique per event: the process's start id and a counter, for consumers that drop duplicates. */
  eventId: z.string(),
  /** Time the event was raised, which is earlier than its publication after an outage. */
  at: isoTime,
});

export type EventPayload = z.output<typeof eventPayloadSchema>;

export const alarmSchema = z.object({
  id: z.string(),
  severity: severitySchema,
  reason: reason,
  raisedAt: isoTime,
});

export type Alarm = z.output<typeof alarmSchema>;

export const alarmsPayloadSchema = z.object({
  schemaVersion: z.literal(PAYLOAD_SCHEMA_VERSION),
  boxId: z.string(),
  at: isoTime,
  alarms: z.array(alarmSchema),
});

export const destinationStatusSchema = z.object({
  /** Objects waiting to be sent, and being sent. */
  queued: count,
  sending: count,
  bytesQueued: count,
  setAside: count,
  /** Objects stored and waiting for their Storage Commitment result. */
  awaitingCommitment: count,
  /** Age of the oldest object not yet delivered, in seconds; null when there is none. */
  oldestUndeliveredSeconds: z.number().nonnegative().nullable(),
  /** Outcome of the last object tried: stored, warning, transient, permanent or none. */
  lastResult: z.string(),
  lastError: reason.nullable(),
  /** Whether the last association attempt succeeded; null before the first. */
  linkUp: z.boolean().nullable(),
  consecutiveFailures: count,
  nextAttemptAt: isoTime.nullable(),
});

export const systemStatusSchema = z.object({
  /** Free bytes on the spool's filesystem, for unprivileged users; null when unknown. */
  diskFreeBytes: z.number().nonnegative().nullable(),
  /** Busy share of all cores since the last sample, 0 to 100. */
  cpuPercent: z.number().nonnegative(),
  /** Share of one core used by this process since the last sample. */
  processCpuPercent: z.number().nonnegative(),
  memoryTotalBytes: count,
  memoryAvailableBytes: count,
  processRssBytes: count,
  /** Hottest thermal zone in degrees Celsius; null where the box exposes none. */
  temperatureCelsius: z.number().nullable(),
  /** Event-loop delay since the last sample, in milliseconds. */
  eventLoopDelayP99Ms: z.number().nonnegative(),
  eventLoopDelayMaxMs: z.number().nonnegative(),
  uptimeSeconds: count,
});

export const statusPayloadSchema = z.object({
  schemaVersion: z.literal(PAYLOAD_SCHEMA_VERSION),
  boxId: z.string(),
  at: isoTime,
  softwareVersion: z.string(),
  /** First 12 hex digits of the SHA-256 of the running profile's settings. */
  profileVersion: z.string(),
  startedAt: isoTime,
  video: z.object({
    signal: z.boolean(),
    width: z.number().int().nullable(),
    height: z.number().int().nullable(),
    pixelFormat: z.string().nullable(),
    fps: z.number().nonnegative(),
    framesDropped: count,
  }),
  footswitch: z.object({ kind: z.string(), connected: z.boolean() }),
  barcodeReader: z.object({ configured: z.boolean(), connected: z.boolean() }),
  exam: z.object({ active: z.boolean() }),
  worklist: z.object({ configured: z.boolean(), cacheAgeSeconds: z.number().nonnegative().nullable() }),
  spool: z.object({
    objects: count,
    bytes: count,
    oldestUndeliveredSeconds: z.number().nonnegative().nullable(),
  }),
  destinations: z.record(z.string(), destinationStatusSchema),
  alarms: z.array(z.string()),
  mqtt: z.object({
    connects: count,
    /** Connections in the last flapping window, the current one included. */
    recentConnects: count,
    flapping: z.boolean(),
  }),
  system: systemStatusSchema,
});

export type StatusPayload = z.output<typeof statusPayloadSchema>;
export type DestinationStatusPayload = z.output<typeof destinationStatusSchema>;
export type SystemStatus = z.output<typeof systemStatusSchema>;

/** A command request's payload. MQTT 3.1.1 has no response topic or correlation data, so they may come here. */
export const commandRequestSchema = z.strictObject({
  args: z.record(z.string(), z.unknown()).default({}),
  responseTopic: z.string().min(1).optional(),
  correlationId: z.string().min(1).max(128).optional(),
});

export const commandErrorSchema = z.object({ code: z.string(), message: reason });

export const commandResponseSchema = z.object({
  schemaVersion: z.literal(PAYLOAD_SCHEMA_VERSION),
  boxId: z.string(),
  at: isoTime,
  command: z.string(),
  correlationId: z.string().optional(),
  ok: z.boolean(),
  result: z.unknown().optional(),
  error: commandErrorSchema.optional(),
});

export type CommandResponse = z.output<typeof commandResponseSchema>;
