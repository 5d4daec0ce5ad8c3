import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';

/** 640x480, left half black, right half white, in limited-range YUV as capture cards deliver it. */
export const BLACK_WHITE_GRAPH =
  'color=c=black:s=640x480:r=30,drawbox=x=320:y=0:w=320:h=480:color=white:t=fill,format=yuv420p,realtime';

export interface TestProfileOptions {
  directory: string;
  devicePath?: string;
  destinations?: Array<{
    name: string;
    host: string;
    port: number;
    calledAeTitle: string;
    retry?: { initialMs: number; maxMs: number };
    storageCommitment?: { enabled: boolean; requestDelayMs?: number; resultTimeoutMs?: number; reportWaitMs?: number };
  }>;
  /** The profile's commitmentListener section, for destinations that ask for Storage Commitment. */
  commitmentListener?: { host: string; port: number; aeTitle?: string; allowedPeers: Array<{ aeTitle: string; host: string }> };
  mqttUrl?: string;
  /** Further settings of the mqtt section, such as commands, homeAssistant or reconnect. */
  mqtt?: Record<string, unknown>;
  /** station.boxId; null leaves it out, so the box id comes from the machine id. Defaults to test-box. */
  boxId?: string | null;
  stationName?: string;
  graph?: string;
  /** Spool settings besides the folder, such as quotas and retention. */
  spool?: { retentionHours?: number; maxBytes?: number; minFreeBytes?: number };
  /** Pedal gestures; defaults to short: still. */
  gestures?: { short?: string; long?: string; double?: string };
  /** Hold time of a long press, in ms. */
  longPressMs?: number;
  /** Further top-level profile sections, such as clip, image or still. */
  sections?: Record<string, unknown>;
}

/** Writes a profile for a daemon under test: lavfi video, pty footswitch, loopback peers. */
export async function writeTestProfile(options: TestProfileOptions): Promise<string> {
  const profile = {
    formatVersion: 2,
    description: 'test profile',
    station: {
      aeTitle: 'ENDOCAP_TEST',
      stationName: options.stationName ?? 'TEST-TOWER',
      institutionName: 'Test Hospital',
      departmentName: 'Endoscopy',
      uidRoot: '1.2.826.0.1.3680043.10.1437',
      ...(options.boxId === null ? {} : { boxId: options.boxId ?? 'test-box' }),
    },
    video: {
      source: { kind: 'lavfi', url: options.graph ?? BLACK_WHITE_GRAPH },
      ringFrames: 4,
      signalTimeoutMs: 2_000,
    },
    footswitch: options.devicePath
      ? {
          kind: 'serial',
          path: options.devicePath,
          baudRate: 9600,
          protocol: { kind: 'bytes', down: [0x31], up: [0x30] },
          debounceMs: 20,
          ...(options.longPressMs === undefined ? {} : { longPressMs: options.longPressMs }),
          gestures: { short: 'still', long: 'none', double: 'none', ...options.gestures },
          reopenIntervalMs: 500,
        }
      : { kind: 'none' },
    destinations: (options.destinations ?? []).map((destination) => ({
      kind: 'dicom',
      ...destination,
      connectTimeoutMs: 2_000,
      associationTimeoutMs: 5_000,
      requestTimeoutMs: 10_000,
      retry: destination.retry ?? { initialMs: 200, maxMs: 2_000 },
    })),
    ...(options.mqttUrl ? { mqtt: { url: options.mqttUrl, topicPrefix: 'endocap-test', statusIntervalMs: 1_000, ...options.mqtt } } : {}),
    ...(options.commitmentListener ? { commitmentListener: options.commitmentListener } : {}),
    // Retention 0 unless a test sets more: an empty spool folder then means everything was delivered.
    spool: { directory: path.join(options.directory, 'spool'), retentionHours: 0, ...options.spool },
    stateDirectory: path.join(options.directory, 'state'),
    logLevel: 'debug',
    ...options.sections,
  };
  const file = path.join(options.directory, 'profile.yaml');
  await writeFile(file, stringify(profile));
  return file;
}
