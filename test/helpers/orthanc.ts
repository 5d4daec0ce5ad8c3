import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from './ports.js';

export interface OrthancPeer {
  dicomPort: number;
  httpPort: number;
  aeTitle: string;
  /** GET on Orthanc's REST API, parsed as JSON. */
  get<T>(route: string): Promise<T>;
  /** POST of a JSON body on Orthanc's REST API, with the response parsed as JSON. */
  post<T>(route: string, body: unknown): Promise<T>;
  /** Downloads the stored file of an instance. */
  file(instanceId: string): Promise<Buffer>;
  stop(): Promise<void>;
  /** Stops the process without removing its storage, as a PACS outage. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and storage. */
  restart(): Promise<void>;
}

/**
 * Starts a real Orthanc (Debian's 1.10) on free loopback ports with its own
 * storage folder. Orthanc listens on every interface and has no bind-address
 * option; the ports are random and the process lives only for the test.
 */
export interface OrthancOptions {
  aeTitle?: string;
  checkCalledAet?: boolean;
  /**
   * DicomModalities entries, by name. A modality that asks for Storage
   * Commitment gets its result on a new association to the address listed
   * here, when its entry has `AllowStorageCommitment: true`.
   */
  modalities?: Record<string, { AET: string; Host: string; Port: number; AllowStorageCommitment?: boolean }>;
  /** Loads the DICOMweb plugin (Debian package orthanc-dicomweb), serving STOW-RS, QIDO-RS and WADO-RS under /dicom-web/. */
  dicomWeb?: boolean;
}

const dicomWebPlugin = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

export async function startOrthanc(options: OrthancOptions = {}): Promise<OrthancPeer> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'endocap-orthanc-'));
  const dicomPort = await freePort();
  const httpPort = await freePort();
  const aeTitle = options.aeTitle ?? 'ORTHANC';
  const config = {
    Name: 'endocap-test',
    StorageDirectory: path.join(directory, 'storage'),
    IndexDirectory: path.join(directory, 'index'),
    DicomAet: aeTitle,
    DicomPort: dicomPort,
    HttpPort: httpPort,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    DicomCheckCalledAet: options.checkCalledAet ?? true,
    DefaultEncoding: 'Utf8',
    StorageCompression: false,
    Plugins: options.dicomWeb ? [dicomWebPlugin] : [],
    ...(options.dicomWeb ? { DicomWeb: { Enable: true, Root: '/dicom-web/' } } : {}),
    DicomAlwaysAllowStore: true,
    UnknownSopClassAccepted: false,
    DicomModalities: options.modalities ?? {},
  };
  const configFile = path.join(directory, 'orthanc.json');
  await writeFile(configFile, JSON.stringify(config, null, 2));

  let child: ChildProcess | undefined;
  let output = '';
  const base = `http://127.0.0.1:${httpPort}`;

  async function launch(): Promise<void> {
    child = spawn('Orthanc', [configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-8_000)));
    child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-8_000)));
    const started = child;
    await waitFor(
      async () => {
        if (started.exitCode !== null) throw new Error(`Orthanc exited with ${started.exitCode}: ${output}`);
        try {
          return (await fetch(`${base}/system`)).ok;
        } catch {
          return false;
        }
      },
      30_000,
      'Orthanc to answer GET /system',
    );
  }

  async function kill(): Promise<void> {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  }

  await launch();
  return {
    dicomPort,
    httpPort,
    aeTitle,
    async get<T>(route: string): Promise<T> {
      const response = await fetch(`${base}${route}`);
      if (!response.ok) throw new Error(`Orthanc GET ${route} failed with HTTP ${response.status}`);
      return (await response.json()) as T;
    },
    async post<T>(route: string, body: unknown): Promise<T> {
      const response = await fetch(`${base}${route}`, { method: 'POST', body: JSON.stringify(body) });
      if (!response.ok) throw new Error(`Orthanc POST ${route} failed with HTTP ${response.status}`);
      const text = await response.text();
      return (text === '' ? undefined : JSON.parse(text)) as T;
    },
    async file(instanceId: string): Promise<Buffer> {
      const response = await fetch(`${base}/instances/${instanceId}/file`);
      if (!response.ok) throw new Error(`Orthanc GET file of ${instanceId} failed with HTTP ${response.status}`);
      return Buffer.from(await response.arrayBuffer());
    },
    kill,
    restart: launch,
    async stop(): Promise<void> {
      await kill();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
