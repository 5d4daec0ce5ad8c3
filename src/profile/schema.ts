import { z } from 'zod';
import { clipDefaults, clipSchema, imageDefaults, imageSchema, stillSelectionSchema } from './capture-schema.js';
import { hl7Schema } from './hl7-schema.js';

/**
 * The hardware profile: one file per box, describing its tower, footswitch,
 * destinations and identity. This schema is the single source of the
 * TypeScript types and of `hw-profiles/profile.schema.json`.
 */

/** Application Entity title: 1 to 16 characters of the default repertoire, no backslash (PS3.5 6.2, VR AE). */
export const aeTitle = z
  .string()
  .regex(/^[\x20-\x5b\x5d-\x7e]{1,16}$/, 'AE title of 1 to 16 printable ASCII characters without backslash')
  .refine((value) => value.trim().length > 0, 'AE title that is not all spaces');

/**
 * UID root: dot-separated numeric components without leading zeros (PS3.5 9.1).
 * At most 40 characters so that generated suffixes fit in the 64-character UID limit.
 */
export const uidRoot = z
  .string()
  .max(40, 'UID root of at most 40 characters, so that generated UIDs fit in 64')
  .regex(/^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$/, 'UID root of numeric components without leading zeros, such as 1.2.826.0.1.3680043.10.999');

/** The format version this code writes and validates; older ones are migrated by migrate.ts. */
export const CURRENT_FORMAT_VERSION = 2;

const durationMs = z.number().int().nonnegative();
const positiveMs = z.number().int().positive();

interface RetryDefaults {
  initialMs: number;
  maxMs: number;
  multiplier: number;
}

/**
 * Backoff settings whose fields default to `defaults`, whether the block is
 * left out or only some of its fields are given: a profile that sets only
 * initialMs keeps this use's maxMs, not another use's.
 */
function retryWith(defaults: RetryDefaults) {
  return z
    .strictObject({
      initialMs: positiveMs.default(defaults.initialMs).describe('Wait in ms before the first retry.'),
      maxMs: positiveMs.default(defaults.maxMs).describe('Longest wait in ms between two attempts.'),
      multiplier: z.number().min(1).max(10).default(defaults.multiplier).describe('Factor applied to the wait after each failed attempt, up to maxMs.'),
    })
    .default(defaults)
    .describe('Exponential backoff with jitter between attempts.');
}

const retryDefaults: RetryDefaults = { initialMs: 1_000, maxMs: 60_000, multiplier: 2 };

export const retrySchema = retryWith(retryDefaults);

export const stationSchema = z.strictObject({
  aeTitle: aeTitle.describe('This box\'s AE title, used as calling AE title and in SourceApplicationEntityTitle.'),
  stationName: z.string().min(1).max(16).describe('StationName (0008,1010), at most 16 characters.'),
  institutionName: z.string().max(64).default('').describe('InstitutionName (0008,0080).'),
  departmentName: z.string().max(64).default('').describe('InstitutionalDepartmentName (0008,1040).'),
  uidRoot: uidRoot.describe('Organisation UID root under which every Study, Series and SOP Instance UID is generated.'),
  deviceSerialNumber: z.string().max(64).optional().describe('DeviceSerialNumber (0018,1000); defaults to the box id.'),
  boxId: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'box id of letters, digits, dot, dash or underscore')
    .optional()
    .describe('Stable id of this box in telemetry; defaults to /etc/machine-id.'),
});

export const videoSourceSchema = z.strictObject({
  kind: z.enum(['v4l2', 'file', 'network', 'lavfi', 'simulator']).describe('Type of source.'),
  url: z
    .string()
    .default('')
    .describe('Device path (/dev/videoN), file path, stream URL, or lavfi graph. Ignored for the simulator.'),
  format: z.string().optional().describe('FFmpeg input format, such as v4l2, lavfi, mpegts; guessed when absent.'),
  width: z.number().int().min(16).max(8192).optional().describe('Requested width in pixels (v4l2 video_size).'),
  height: z.number().int().min(16).max(8192).optional().describe('Requested height in pixels.'),
  frameRate: z.number().positive().max(240).optional().describe('Requested frame rate in frames per second.'),
  inputFormat: z.string().optional().describe('v4l2 input_format, such as yuyv422 or mjpeg.'),
  options: z.record(z.string(), z.string()).default({}).describe('Extra FFmpeg demuxer options, passed as given.'),
});

export const videoSchema = z.strictObject({
  source: videoSourceSchema.describe('Video input: a capture card, a network stream, a file or a generated test picture.'),
  ringFrames: z.number().int().min(1).max(120).default(4).describe('Decoded frames kept in memory for stills.'),
  signalTimeoutMs: positiveMs.default(2_000).describe('No frame for this long means loss of signal.'),
  openTimeoutMs: positiveMs.default(10_000).describe('Longest wait for the source to open.'),
  reopen: retryWith({ initialMs: 500, maxMs: 10_000, multiplier: 2 }),
});

export const pedalAction = z
  .enum(['still', 'clip', 'end-exam', 'none'])
  .describe('Action run by a pedal gesture; clip starts a clip and stops it when the same gesture comes again; end-exam ends the selected exam.');

const byteValue = z.number().int().min(0).max(255);

export const footswitchProtocolSchema = z.discriminatedUnion('kind', [
  z
    .strictObject({
      kind: z.literal('bytes'),
      down: z.array(byteValue).min(1).describe('Byte values that mean pedal down.'),
      up: z.array(byteValue).min(1).describe('Byte values that mean pedal up.'),
    })
    .describe('Each received byte is looked up; unknown bytes are ignored.'),
  z
    .strictObject({
      kind: z.literal('lines'),
      down: z.array(z.string().min(1)).min(1).describe('Text lines that mean pedal down.'),
      up: z.array(z.string().min(1)).min(1).describe('Text lines that mean pedal up.'),
      maxLineLength: z.number().int().min(8).max(4096).default(256).describe('Longest line in bytes; a longer line is dropped.'),
    })
    .describe('Lines end with CR, LF or CRLF; surrounding white space is ignored.'),
  z
    .strictObject({
      kind: z.literal('modem'),
      // RI is not offered: serialport 13 reads only CTS, DSR and DCD (its get() has no ring indicator).
      line: z.enum(['cts', 'dsr', 'dcd']).describe('Modem-status line the pedal contact drives.'),
      activeLow: z.boolean().default(false).describe('True when the pedal pressed clears the line.'),
      pollIntervalMs: positiveMs.max(1_000).default(5).describe('How often the line is read.'),
    })
    .describe('Contact wired to a modem-status line, polled.'),
]);

export const footswitchSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('serial'),
    path: z.string().min(1).describe('Serial device; prefer a stable /dev/serial/by-id/... path.'),
    baudRate: z.number().int().positive().default(9600).describe('Serial line speed in bits per second.'),
    protocol: footswitchProtocolSchema.describe('How the footswitch signals pedal down and up.'),
    debounceMs: durationMs.max(500).default(30).describe('Changes shorter than this are contact bounce.'),
    longPressMs: positiveMs.default(800).describe('Held at least this long is a long press.'),
    doublePressMs: positiveMs.default(350).describe('A second press within this time is a double press.'),
    gestures: z
      .strictObject({ short: pedalAction.default('still'), long: pedalAction.default('none'), double: pedalAction.default('none') })
      .default({ short: 'still', long: 'none', double: 'none' })
      .describe('Action of each pedal gesture: short press, long press and double press.'),
    reopenIntervalMs: positiveMs.max(2_000).default(1_000).describe('How often a missing port is looked for.'),
  }),
  z.strictObject({
    kind: z.literal('keyboard'),
    gestures: z
      .strictObject({ short: pedalAction.default('still'), long: pedalAction.default('none'), double: pedalAction.default('none') })
      .default({ short: 'still', long: 'none', double: 'none' })
      .describe('Action of each pedal gesture: short press, long press and double press.'),
  }).describe('Space bar on the controlling terminal; for the demo and bench work.'),
  z.strictObject({ kind: z.literal('none') }).describe('No footswitch.'),
]);

const ipv4Address = z.ipv4();
const ipv6Address = z.ipv6();

/** IPv4 or IPv6 address literal. Host names are not accepted: they would be resolved again on every check. */
const ipAddress = z
  .string()
  .refine((value) => ipv4Address.safeParse(value).success || ipv6Address.safeParse(value).success, 'IP address such as 192.0.2.10, not a host name');

export const storageCommitmentSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Ask the PACS to commit each stored object.'),
    batchSize: z.number().int().min(1).max(1_000).default(50).describe('Objects named in one N-ACTION request.'),
    requestDelayMs: durationMs.default(5_000).describe('Time after an object is stored before commitment is requested for it.'),
    resultTimeoutMs: positiveMs.default(600_000).describe('Commitment is requested again, in a new transaction, when no result arrived within this time.'),
    reportWaitMs: durationMs
      .max(60_000)
      .default(1_000)
      .describe('Time the association stays open after the N-ACTION response, for a result the PACS sends on that association.'),
    unsupportedRetryMs: positiveMs
      .default(3_600_000)
      .describe('First wait before asking again a PACS that rejected Storage Commitment; doubles up to 24 hours.'),
  })
  .describe('Storage Commitment Push Model (PS3.4 Annex J) after objects are stored.');

export const destinationTlsSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('False connects over plain TCP and ignores the other TLS settings.'),
    caFile: z.string().min(1).optional().describe('PEM file of the CA certificates that sign the PACS certificate; Node\'s built-in list when absent.'),
    certFile: z.string().min(1).optional().describe('PEM file of this box\'s client certificate, for a PACS that requires one.'),
    keyFile: z.string().min(1).optional().describe('PEM file of the private key of certFile, unencrypted.'),
    serverName: z.string().min(1).optional().describe('Name the PACS certificate must carry; defaults to host.'),
    rejectUnauthorized: z.boolean().default(true).describe('Verify the PACS certificate. Turn off only in tests.'),
  })
  .refine((tls) => (tls.certFile === undefined) === (tls.keyFile === undefined), { message: 'certFile and keyFile given together', path: ['keyFile'] })
  .describe('DICOM over TLS (PS3.15 B.1), TLS 1.2 or later.');

const destinationName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'name of lower-case letters, digits, dash or underscore')
  .describe('Internal name used in logs, telemetry and the spool.');

const maxObjectBytes = z
  .number()
  .int()
  .min(64 * 1024)
  .optional()
  .describe('Largest object this destination accepts, in bytes; longer clips are split into consecutive clips below it.');

/** A DICOM (DIMSE) destination: C-STORE over TCP or TLS. */
export const destinationSchema = z.strictObject({
  kind: z.literal('dicom').describe('DICOM network destination: C-STORE, and Storage Commitment when enabled.'),
  name: destinationName,
  host: z.string().min(1).describe('Host name or IP address of the DICOM peer.'),
  port: z.number().int().min(1).max(65535).describe('TCP port of the DICOM peer.'),
  calledAeTitle: aeTitle.describe('AE title of the DICOM peer (Called AE Title).'),
  callingAeTitle: aeTitle.optional().describe('Defaults to station.aeTitle.'),
  connectTimeoutMs: positiveMs.default(5_000).describe('Longest wait in ms for the TCP connection, and the TLS handshake when tls is set.'),
  associationTimeoutMs: positiveMs.default(10_000).describe('Longest wait in ms for the peer to accept or reject the association.'),
  requestTimeoutMs: positiveMs.default(30_000).describe('Longest wait in ms for the response to one request.'),
  retry: retryWith(retryDefaults),
  maxObjectBytes,
  tls: destinationTlsSchema.optional().describe('Absent means plain TCP.'),
  storageCommitment: storageCommitmentSchema.optional().describe('Absent means disabled: stored objects count as delivered.'),
});

export const stowRsAuthSchema = z
  .discriminatedUnion('kind', [
    z.strictObject({
      kind: z.literal('bearer'),
      tokenFile: z.string().min(1).describe('File holding the bearer token (surrounding white space is ignored), readable by the daemon only. Never logged.'),
    }),
    z.strictObject({
      kind: z.literal('basic'),
      credentialsFile: z.string().min(1).describe('YAML file with "username" and "password", readable by the daemon only. Never logged.'),
    }),
  ])
  .describe('HTTP authentication; the secret is read from its file before every request, so a changed file needs no restart.');

export const stowRsTlsSchema = z
  .strictObject({
    caFile: z.string().min(1).optional().describe('PEM file of the CA certificates that sign the server certificate; Node\'s built-in list when absent.'),
    certFile: z.string().min(1).optional().describe('PEM file of this box\'s client certificate, for a server that requires one.'),
    keyFile: z.string().min(1).optional().describe('PEM file of the private key of certFile, unencrypted.'),
    rejectUnauthorized: z.boolean().default(true).describe('Verify the server certificate. Turn off only in tests.'),
  })
  .refine((tls) => (tls.certFile === undefined) === (tls.keyFile === undefined), { message: 'certFile and keyFile given together', path: ['keyFile'] })
  .describe('TLS settings for an https:// URL.');

/** A DICOMweb destination: STOW-RS (PS3.18 10.5) over HTTP or HTTPS. */
export const stowRsDestinationSchema = z.strictObject({
  kind: z.literal('stow-rs').describe('DICOMweb destination: objects are posted with STOW-RS.'),
  name: destinationName,
  url: z
    .string()
    .regex(/^https?:\/\/[^\s/@]+(\/[^\s]*)?$/, 'http:// or https:// URL without credentials, such as https://pacs.example.org/dicom-web')
    .describe('Base URL of the DICOMweb service; objects are posted to <url>/studies.'),
  auth: stowRsAuthSchema.optional().describe('Absent means no authentication.'),
  tls: stowRsTlsSchema.optional(),
  connectTimeoutMs: positiveMs.default(5_000).describe('Longest wait in ms for the TCP connection, and the TLS handshake for https.'),
  requestTimeoutMs: positiveMs.default(60_000).describe('Longest time without progress while a request is sent or its response read.'),
  retry: retryWith(retryDefaults),
  maxObjectBytes,
  objectsPerRequest: z.number().int().min(1).max(100).default(10).describe('Objects posted in one multipart request; clips always go alone.'),
});

export const anyDestinationSchema = z.discriminatedUnion('kind', [destinationSchema, stowRsDestinationSchema]);

/** One MQTT topic level without wildcards or separators, as Sparkplug B requires of its ids. */
const topicLevel = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'id of letters, digits, dot, dash or underscore');

export const mqttTlsSchema = z
  .strictObject({
    caFile: z.string().min(1).optional().describe('PEM file of the CA certificates that sign the broker certificate; Node\'s built-in list when absent.'),
    certFile: z.string().min(1).optional().describe('PEM file of this box\'s client certificate, for a broker that requires one.'),
    keyFile: z.string().min(1).optional().describe('PEM file of the private key of certFile, unencrypted.'),
  })
  .refine((tls) => (tls.certFile === undefined) === (tls.keyFile === undefined), { message: 'certFile and keyFile given together', path: ['keyFile'] })
  .describe('TLS settings for mqtts:// and wss:// URLs. The broker certificate is always verified.');

export const mqttSchema = z
  .strictObject({
    url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\//, 'URL starting with mqtt://, mqtts://, ws:// or wss://').describe('Broker URL, such as mqtt://192.0.2.20:1883 or mqtts://broker.example.org:8883.'),
    topicPrefix: z.string().regex(/^[^#+]+$/, 'topic prefix without wildcards').default('endocap').describe('First topic level of every message this box publishes.'),
    clientId: z.string().min(1).max(64).optional().describe('Defaults to endocap-<box id>.'),
    statusIntervalMs: positiveMs.default(60_000).describe('Heartbeat interval of the retained status message.'),
    reconnect: retryWith({ initialMs: 1_000, maxMs: 30_000, multiplier: 2 }),
    protocolVersion: z
      .union([z.literal(5), z.literal(4)])
      .default(5)
      .describe('MQTT 5, or 4 for MQTT 3.1.1. A broker that rejects MQTT 5 is retried with 3.1.1 anyway.'),
    keepaliveSeconds: z.number().int().min(5).max(600).default(30).describe('MQTT keep-alive; the broker publishes the Last Will after 1.5 times this without traffic.'),
    tls: mqttTlsSchema.optional(),
    credentialsFile: z
      .string()
      .min(1)
      .optional()
      .describe('YAML file with "username" and "password" for the broker, readable by the daemon only. Never logged.'),
    homeAssistant: z
      .strictObject({
        enabled: z.boolean().default(false).describe('Publish Home Assistant discovery messages.'),
        discoveryPrefix: z.string().regex(/^[^#+]+$/, 'topic prefix without wildcards').default('homeassistant').describe('Topic prefix Home Assistant watches for discovery.'),
      })
      .default({ enabled: false, discoveryPrefix: 'homeassistant' })
      .describe('Home Assistant MQTT discovery: the box appears as a device with its sensors.'),
    sparkplug: z
      .strictObject({
        enabled: z.boolean().default(false).describe('Run the Sparkplug B edge node.'),
        groupId: topicLevel.default('endocap').describe('Sparkplug group id of this box.'),
        edgeNodeId: topicLevel.optional().describe('Defaults to the box id.'),
      })
      .default({ enabled: false, groupId: 'endocap' })
      .describe('Sparkplug B edge node on a second connection to the same broker.'),
    commands: z
      .strictObject({ enabled: z.boolean().default(false).describe('Accept remote commands.') })
      .default({ enabled: false })
      .describe('Remote commands on <topicPrefix>/<box id>/commands/<name>; restrict who may publish there with broker ACLs.'),
  })
  .refine((mqtt) => mqtt.tls === undefined || /^(mqtts|wss|ssl):/.test(mqtt.url), { message: 'an mqtts:// or wss:// URL when tls is set', path: ['url'] });

export const commitmentListenerSchema = z
  .strictObject({
    host: ipAddress.describe('Local address to listen on; 0.0.0.0 listens on every IPv4 interface.'),
    port: z.number().int().min(1).max(65535).describe('TCP port to listen on.'),
    aeTitle: aeTitle.optional().describe('AE title the PACS must call; defaults to station.aeTitle.'),
    allowedPeers: z
      .array(
        z.strictObject({
          aeTitle: aeTitle.describe('Calling AE title of the PACS.'),
          host: ipAddress.describe('IP address the PACS connects from.'),
        }),
      )
      .min(1)
      .describe('PACS allowed to send results: both the calling AE title and the source address must match one entry.'),
  })
  .describe('Receives Storage Commitment results (N-EVENT-REPORT) that a PACS sends on a new association.');

const GIB = 1024 ** 3;

export const spoolSchema = z.strictObject({
  directory: z.string().min(1).describe('Folder of the durable object spool.'),
  retentionHours: z
    .number()
    .min(0)
    .max(8_760)
    .default(24)
    .describe('Hours an object delivered to every destination is kept for re-sending; 0 removes it once deliveries pause for 0.5 s.'),
  // 20 GiB: at an estimated 0.5 MB per 1080p JPEG still, about 40 000 stills,
  // weeks of a busy room's output during a PACS outage, while leaving room for
  // the system on a 32 GB industrial SSD.
  maxBytes: z
    .number()
    .int()
    .positive()
    .default(20 * GIB)
    .describe('Maximum total size of the spooled objects in bytes. Delivered objects are removed oldest first to stay under it; when undelivered ones fill it, captures are rejected.'),
  minFreeBytes: z
    .number()
    .int()
    .nonnegative()
    .default(GIB)
    .describe("Free space in bytes that the spool leaves on its filesystem (measured with statfs), for the system and its logs; 0 turns the check off."),
});

export const stillSchema = z.strictObject({
  jpegQuality: z.number().int().min(50).max(100).default(90).describe('JPEG quality, 50 to 100.'),
  selection: stillSelectionSchema.default('on-screen'),
  sharpestWindowMs: z.number().int().min(40).max(1_000).default(300).describe('Width in ms of the window, centred on the press, searched for the sharpest frame.'),
});

export const unidentifiedPatientSchema = z.strictObject({
  newStudyAfterIdleMinutes: z.number().int().min(1).max(1440).default(30).describe('A still taken after this much idle time opens a new unidentified-patient study.'),
});

/** Connection to a DICOM service this box calls, other than a storage destination. */
const dicomServiceSchema = destinationSchema.pick({
  host: true,
  port: true,
  calledAeTitle: true,
  callingAeTitle: true,
  connectTimeoutMs: true,
  associationTimeoutMs: true,
  requestTimeoutMs: true,
  tls: true,
});

export const worklistSchema = dicomServiceSchema
  .extend({
    stationAeTitle: aeTitle.optional().describe('ScheduledStationAETitle to match; defaults to station.aeTitle.'),
    matchStationAeTitle: z.boolean().default(true).describe('Match ScheduledStationAETitle; false returns the steps of every station.'),
    modality: z
      .string()
      .regex(/^[A-Z0-9 _]{1,16}$/, 'modality code such as ES')
      .nullable()
      .default('ES')
      .describe('Modality to match; null returns every modality.'),
    daysBefore: z.number().int().min(0).max(31).default(0).describe('Days before today included in the scheduled start date range.'),
    daysAfter: z.number().int().min(0).max(31).default(0).describe('Days after today included in the scheduled start date range.'),
    refreshIntervalMs: positiveMs.min(5_000).default(300_000).describe('Time between two scheduled queries.'),
    queryTimeoutMs: positiveMs.default(60_000).describe('Longest time one whole query may take, all responses included.'),
    maxEntries: z.number().int().min(1).max(10_000).default(2_000).describe('Most entries kept from one query; the query is cut there and a warning logged.'),
    retry: retryWith({ initialMs: 5_000, maxMs: 300_000, multiplier: 2 }).describe('Backoff after a failed query, until the next success.'),
    staleAfterMinutes: z.number().int().min(1).max(10_080).default(60).describe('A cache older than this raises the worklist-stale alarm.'),
    assumedCharacterSet: z
      .enum(['ISO_IR 6', 'ISO_IR 100', 'ISO_IR 101', 'ISO_IR 109', 'ISO_IR 110', 'ISO_IR 126', 'ISO_IR 127', 'ISO_IR 138', 'ISO_IR 144', 'ISO_IR 148', 'ISO_IR 166', 'ISO_IR 192', 'ISO_IR 203', 'GB18030', 'GBK'])
      .optional()
      .describe('SpecificCharacterSet assumed when a response declares none. When absent, undeclared non-ASCII text is read as UTF-8 if valid, else Latin-1, with a warning.'),
  })
  .describe('Modality Worklist server (C-FIND, PS3.4 K) queried for the procedures scheduled on this station.');

export const mppsSchema = dicomServiceSchema
  .extend({
    retry: retryWith({ initialMs: 5_000, maxMs: 600_000, multiplier: 2 }),
    maxAttempts: z.number().int().min(1).max(1_000).default(50).describe('Attempts after which a message the server keeps failing is set aside.'),
  })
  .describe('Modality Performed Procedure Step server (N-CREATE and N-SET, PS3.4 F).');

export const barcodeSchema = z
  .strictObject({
    path: z.string().min(1).describe('Serial device of the scanner; prefer a stable /dev/serial/by-id/... path.'),
    baudRate: z.number().int().positive().default(9600).describe('Serial line speed in bits per second.'),
    matches: z
      .array(z.enum(['accession-number', 'patient-id']))
      .min(1)
      .default(['accession-number', 'patient-id'])
      .describe('Worklist fields a scanned code is compared with, exactly.'),
    minLength: z.number().int().min(1).max(64).default(3).describe('Shorter lines are noise and ignored.'),
    maxLineLength: z.number().int().min(8).max(1_024).default(64).describe('Longer lines are noise and ignored, in bytes.'),
    reopenIntervalMs: positiveMs.max(10_000).default(1_000).describe('How often a missing scanner port is looked for.'),
  })
  .describe('Barcode scanner on a serial port sending one code per line (CR, LF or CRLF).');

export const examSchema = z.strictObject({
  idleEndMinutes: z.number().int().min(1).max(1_440).default(120).describe('An exam with no capture or command for this long is ended.'),
  autoSelect: z
    .strictObject({
      enabled: z.boolean().default(false).describe('Select the procedure automatically.'),
      windowBeforeMinutes: z.number().int().min(0).max(1_440).default(60).describe('Steps scheduled up to this long before now count.'),
      windowAfterMinutes: z.number().int().min(0).max(1_440).default(60).describe('Steps scheduled up to this long after now count.'),
    })
    .default({ enabled: false, windowBeforeMinutes: 60, windowAfterMinutes: 60 })
    .describe('At a capture with no exam open, select the procedure when exactly one is scheduled for this station in the window.'),
  barcode: barcodeSchema.optional(),
});

export const profileSchema = z.strictObject({
  formatVersion: z.literal(CURRENT_FORMAT_VERSION).describe('Profile format version; older versions are migrated when the profile is loaded.'),
  description: z.string().default('').describe('Free text saying what the profile is for; endocap does not use it.'),
  station: stationSchema.describe('Identity of this box in DICOM objects and telemetry.'),
  video: videoSchema.describe('Video input and the frames kept for stills.'),
  footswitch: footswitchSchema.describe('Pedal that triggers stills and clips.'),
  destinations: z
    .array(anyDestinationSchema)
    .default([])
    .describe('Where captured objects are sent; each object is spooled for every destination.')
    .superRefine((destinations, context) => {
      const seen = new Set<string>();
      destinations.forEach((destination, index) => {
        if (seen.has(destination.name)) {
          context.addIssue({ code: 'custom', path: [index, 'name'], message: `a unique destination name, "${destination.name}" is used twice` });
        }
        seen.add(destination.name);
      });
    }),
  mqtt: mqttSchema.optional().describe('MQTT telemetry; absent turns telemetry off.'),
  commitmentListener: commitmentListenerSchema.optional(),
  spool: spoolSchema.describe('Durable queue of captured objects waiting for delivery.'),
  stateDirectory: z.string().min(1).describe('Folder of the small appliance state (lowdb).'),
  still: stillSchema.default({ jpegQuality: 90, selection: 'on-screen', sharpestWindowMs: 300 }).describe('JPEG stills.'),
  image: imageSchema.default(imageDefaults),
  clip: clipSchema.default(clipDefaults),
  unidentifiedPatient: unidentifiedPatientSchema.default({ newStudyAfterIdleMinutes: 30 }).describe('Captures made with no exam selected.'),
  worklist: worklistSchema.optional(),
  mpps: mppsSchema.optional(),
  hl7: hl7Schema.optional(),
  exam: examSchema
    .describe('How exams start, end and select their procedure.')
    .default({ idleEndMinutes: 120, autoSelect: { enabled: false, windowBeforeMinutes: 60, windowAfterMinutes: 60 } }),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('Lowest level of the log lines written to stdout.'),
}).superRefine((profile, context) => {
  // A PACS sends most commitment results on a new association, so a destination
  // that asks for commitment needs somewhere to receive them.
  const asking = profile.destinations.find((destination) => destination.kind === 'dicom' && destination.storageCommitment?.enabled === true);
  if (asking && !profile.commitmentListener) {
    context.addIssue({
      code: 'custom',
      path: ['commitmentListener'],
      message: `a commitmentListener section (host, port, allowedPeers), because destination "${asking.name}" enables storageCommitment`,
    });
  }
  // Both ways of selecting a procedure look it up in the worklist or in the HL7 orders.
  for (const [key, used] of [['barcode', profile.exam.barcode !== undefined], ['autoSelect', profile.exam.autoSelect.enabled]] as const) {
    if (used && !profile.worklist && !profile.hl7) {
      context.addIssue({ code: 'custom', path: ['worklist'], message: `a worklist section (host, port, calledAeTitle) or an hl7 section (host, port), because exam.${key} selects procedures from one of them` });
    }
  }
});

export type Profile = z.infer<typeof profileSchema>;
export type StationConfig = Profile['station'];
export type VideoConfig = Profile['video'];
export type VideoSourceConfig = VideoConfig['source'];
export type FootswitchConfig = Profile['footswitch'];
export type SerialFootswitchConfig = Extract<FootswitchConfig, { kind: 'serial' }>;
export type FootswitchProtocol = SerialFootswitchConfig['protocol'];
export type PedalAction = z.infer<typeof pedalAction>;
/** A DICOM (DIMSE) destination. */
export type DestinationConfig = z.infer<typeof destinationSchema>;
export type StowRsDestinationConfig = z.infer<typeof stowRsDestinationSchema>;
export type AnyDestinationConfig = Profile['destinations'][number];
export type MqttConfig = NonNullable<Profile['mqtt']>;
export type RetryConfig = z.output<typeof retrySchema>;
export type StorageCommitmentConfig = z.infer<typeof storageCommitmentSchema>;
export type CommitmentListenerConfig = NonNullable<Profile['commitmentListener']>;
export type WorklistConfig = NonNullable<Profile['worklist']>;
export type MppsConfig = NonNullable<Profile['mpps']>;
export type ExamConfig = Profile['exam'];
export type BarcodeConfig = NonNullable<ExamConfig['barcode']>;

/** Returns the profile's DICOM (DIMSE) destinations: those that C-ECHO and Storage Commitment apply to. */
export function dicomDestinations(profile: Pick<Profile, 'destinations'>): DestinationConfig[] {
  return profile.destinations.filter((destination): destination is DestinationConfig => destination.kind === 'dicom');
}

/** True when objects sent to this destination count as delivered only once the PACS has committed them. */
export function commitmentEnabled(destination: AnyDestinationConfig): boolean {
  return destination.kind === 'dicom' && destination.storageCommitment?.enabled === true;
}
