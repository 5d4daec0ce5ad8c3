import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitFor } from '../helpers/ports.js';

const run = promisify(execFile);

/**
 * Worklist entries for tests, written as .wl files with DCMTK dump2dcm. Text
 * values are raw bytes in the entry's character set, so that every character
 * set is exercised exactly as a server stores it.
 */
export interface TestEntry {
  /** Value of SpecificCharacterSet; null leaves the attribute out. */
  characterSet: string | null;
  patientName: Buffer;
  patientId: string;
  issuerOfPatientId?: string;
  birthDate?: string;
  sex?: string;
  accessionNumber: string;
  /** Empty leaves StudyInstanceUID empty. */
  studyInstanceUid: string;
  referringPhysician?: Buffer;
  requestedProcedureId?: string;
  requestedProcedureDescription?: Buffer;
  stepId?: string;
  stepDescription?: Buffer;
  stationAeTitle?: string;
  modality?: string;
  startDate: string;
  startTime?: string;
  /** Puts the scheduled step attributes at the top level instead of inside the sequence. */
  stepAtTopLevel?: boolean;
}

/** Bytes of text in ISO 2022 IR 87: runs of JIS X 0208 pairs between ESC $ B and ESC ( B. */
export function jis(parts: Array<string | { kanji: string }>): Buffer {
  return Buffer.concat(
    parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'latin1') : Buffer.concat([Buffer.from('\x1b$B', 'latin1'), Buffer.from(part.kanji, 'latin1'), Buffer.from('\x1b(B', 'latin1')]))),
  );
}

/**
 * PS3.5 Annex H example: "Yamada^Tarou=山田^太郎=やまだ^たろう" in ISO 2022 IR 87.
 * The strings are the JIS X 0208 code pairs of each run.
 */
export const YAMADA_JIS = jis(['Yamada^Tarou=', { kanji: ';3ED' }, '^', { kanji: 'B@O:' }, '=', { kanji: '$d$^$@' }, '^', { kanji: '$?$m$&' }]);
export const YAMADA_UNICODE = 'Yamada^Tarou=山田^太郎=やまだ^たろう';
/** 内視鏡 ("endoscope") in ISO 2022 IR 87. */
export const ENDOSCOPE_JIS = jis([{ kanji: 'Fb;k6@' }]);
export const ENDOSCOPE_UNICODE = '内視鏡';

function line(tag: string, vr: string, value: Buffer | string, indent = ''): Buffer {
  return Buffer.concat([Buffer.from(`${indent}(${tag}) ${vr} [`, 'latin1'), Buffer.isBuffer(value) ? value : Buffer.from(value, 'latin1'), Buffer.from(']\n', 'latin1')]);
}

/** DCMTK dump text of one worklist item. */
export function worklistDump(entry: TestEntry): Buffer {
  const stepLines = (indent: string): Buffer[] => [
    line('0008,0060', 'CS', entry.modality ?? 'ES', indent),
    line('0040,0001', 'AE', entry.stationAeTitle ?? 'ENDOCAP_TEST', indent),
    line('0040,0002', 'DA', entry.startDate, indent),
    line('0040,0003', 'TM', entry.startTime ?? '0800', indent),
    line('0040,0006', 'PN', '', indent),
    line('0040,0007', 'LO', entry.stepDescription ?? 'Colonoscopy', indent),
    line('0040,0009', 'SH', entry.stepId ?? 'SPS1', indent),
    line('0040,0010', 'SH', 'ROOM1', indent),
  ];
  const parts: Buffer[] = [];
  if (entry.characterSet !== null) parts.push(line('0008,0005', 'CS', entry.characterSet));
  parts.push(
    line('0008,0050', 'SH', entry.accessionNumber),
    line('0008,0090', 'PN', entry.referringPhysician ?? ''),
    Buffer.from('(0008,1110) SQ (Sequence with explicit length #=0)\n(fffe,e0dd) na (SequenceDelimitationItem)\n', 'latin1'),
    line('0010,0010', 'PN', entry.patientName),
    line('0010,0020', 'LO', entry.patientId),
  );
  if (entry.issuerOfPatientId !== undefined) parts.push(line('0010,0021', 'LO', entry.issuerOfPatientId));
  parts.push(line('0010,0030', 'DA', entry.birthDate ?? ''), line('0010,0040', 'CS', entry.sex ?? ''), line('0020,000d', 'UI', entry.studyInstanceUid));
  parts.push(line('0032,1060', 'LO', entry.requestedProcedureDescription ?? 'Colonoscopy'));
  parts.push(
    Buffer.from(
      [
        '(0032,1064) SQ (Sequence with explicit length #=1)',
        '  (fffe,e000) na (Item with explicit length #=3)',
        '    (0008,0100) SH [45378-5]',
        '    (0008,0102) SH [LN]',
        '    (0008,0104) LO [Colonoscopy]',
        '  (fffe,e00d) na (ItemDelimitationItem)',
        '(fffe,e0dd) na (SequenceDelimitationItem)',
        '',
      ].join('\n'),
      'latin1',
    ),
  );
  if (entry.stepAtTopLevel) {
    parts.push(...stepLines(''));
  } else {
    parts.push(Buffer.from('(0040,0100) SQ (Sequence with explicit length #=1)\n  (fffe,e000) na (Item with explicit length #=8)\n', 'latin1'));
    parts.push(...stepLines('    '));
    parts.push(Buffer.from('  (fffe,e00d) na (ItemDelimitationItem)\n(fffe,e0dd) na (SequenceDelimitationItem)\n', 'latin1'));
  }
  parts.push(line('0040,1001', 'SH', entry.requestedProcedureId ?? `RP-${entry.accessionNumber}`.slice(0, 16)));
  // dump2dcm sorts nothing: elements must come in tag order, so top-level step attributes are merged in.
  return sortTopLevel(Buffer.concat(parts));
}

/** Sorts the top-level lines of a dump by tag, keeping each sequence with its items. */
function sortTopLevel(dump: Buffer): Buffer {
  const lines = dump.toString('latin1').split('\n').filter((text) => text !== '');
  const blocks: string[][] = [];
  for (const text of lines) {
    if (text.startsWith('(') && !text.startsWith('(fffe,e0dd)')) blocks.push([text]);
    else blocks.at(-1)?.push(text);
  }
  blocks.sort((a, b) => (a[0] ?? '').slice(1, 10).localeCompare((b[0] ?? '').slice(1, 10)));
  return Buffer.from(`${blocks.flat().join('\n')}\n`, 'latin1');
}

/** Writes entries as .wl files into `folder` with dump2dcm. */
export async function writeWorklistFiles(folder: string, entries: TestEntry[], prefix = 'entry'): Promise<void> {
  await mkdir(folder, { recursive: true });
  // A few dump2dcm processes at a time: the test machine has two cores.
  for (let start = 0; start < entries.length; start += 4) {
    await Promise.all(
      entries.slice(start, start + 4).map(async (entry, offset) => {
        const index = start + offset;
        const dumpFile = path.join(folder, `${prefix}-${index}.dump`);
        await writeFile(dumpFile, worklistDump(entry));
        await run('dump2dcm', ['-q', dumpFile, path.join(folder, `${prefix}-${index}.wl`)]);
        await rm(dumpFile);
      }),
    );
  }
}

export interface RunningProcess {
  port: number;
  output(): string;
  stop(): Promise<void>;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}

async function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts DCMTK wlmscpfs over `<directory>/<aeTitle>/*.wl`. `-csk` makes it
 * return the SpecificCharacterSet of each file; without it the attribute is
 * left out of responses. It listens on every interface (no bind option in
 * DCMTK 3.6.7), on a port that was free on loopback.
 */
export async function startWlmscpfs(options: { directory: string; aeTitle: string; args?: string[] }): Promise<RunningProcess> {
  await writeFile(path.join(options.directory, options.aeTitle, 'lockfile'), '');
  const port = await freePort();
  const child = spawn('wlmscpfs', [...(options.args ?? ['-csk']), '-dfp', options.directory, String(port)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TCP_NODELAY: '1' } });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('latin1')).slice(-8_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`wlmscpfs exited with ${child.exitCode}: ${output}`);
      return listening(port);
    },
    10_000,
    'wlmscpfs to listen',
  );
  return { port, output: () => output, stop: () => stopChild(child) };
}

export interface OrthancWithWorklists {
  dicomPort: number;
  httpPort: number;
  aeTitle: string;
  /** Folder of the .wl files the worklist plugin serves. */
  worklistDirectory: string;
  get<T>(route: string): Promise<T>;
  file(instanceId: string): Promise<Buffer>;
  stop(): Promise<void>;
}

/**
 * Starts Debian's Orthanc 1.10 with its sample worklist plugin
 * (libModalityWorklists.so) serving `.wl` files from a temp folder, and with
 * storage, so that one process is the worklist server and the PACS. It
 * converts every answer to UTF-8 (DefaultEncoding Utf8). Orthanc listens on
 * every interface and has no bind-address option.
 */
export async function startOrthancWithWorklists(): Promise<OrthancWithWorklists> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-orthanc-wl-'));
  const worklistDirectory = path.join(directory, 'worklists');
  await mkdir(worklistDirectory);
  const dicomPort = await freePort();
  const httpPort = await freePort();
  const config = {
    Name: 'endocap-worklist-test',
    StorageDirectory: path.join(directory, 'storage'),
    IndexDirectory: path.join(directory, 'index'),
    DicomAet: 'ORTHANC',
    DicomPort: dicomPort,
    HttpPort: httpPort,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomCheckCalledAet: true,
    DefaultEncoding: 'Utf8',
    StorageCompression: false,
    DicomAlwaysAllowStore: true,
    // Orthanc rejects worklist queries from modalities it does not know otherwise.
    DicomAlwaysAllowFindWorklist: true,
    Plugins: ['/usr/share/orthanc/plugins/libModalityWorklists.so'],
    Worklists: { Enable: true, Database: worklistDirectory },
  };
  const configFile = path.join(directory, 'orthanc.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const child = spawn('Orthanc', [configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-8_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const base = `http://127.0.0.1:${httpPort}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`Orthanc exited with ${child.exitCode}: ${output}`);
      try {
        return (await fetch(`${base}/system`)).ok;
      } catch {
        return false;
      }
    },
    30_000,
    'Orthanc to answer GET /system',
  );
  return {
    dicomPort,
    httpPort,
    aeTitle: 'ORTHANC',
    worklistDirectory,
    async get<T>(route: string): Promise<T> {
      const response = await fetch(`${base}${route}`);
      if (!response.ok) throw new Error(`Orthanc GET ${route} failed with HTTP ${response.status}`);
      return (await response.json()) as T;
    },
    async file(instanceId: string): Promise<Buffer> {
      const response = await fetch(`${base}/instances/${instanceId}/file`);
      if (!response.ok) throw new Error(`Orthanc GET file of ${instanceId} failed with HTTP ${response.status}`);
      return Buffer.from(await response.arrayBuffer());
    },
    async stop(): Promise<void> {
      if (child.exitCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}
