import { parseArgs } from 'node:util';
import { echoStowRs, echoUrl } from '../dicomweb/stow-echo.js';
import { echo, type EchoResult } from '../pacs/store-scu.js';
import { destinationSchema, dicomDestinations, type DestinationConfig, type Profile, type StowRsDestinationConfig } from '../profile/schema.js';
import { commandLogger, DEFAULT_PROFILE, EXIT_CODES_HELP, EXIT_FAILURE, loadCommandProfile, parseCommand, usage } from './command-line.js';

const HELP = `Usage: endocap echo [--profile FILE]

Sends a DICOM C-ECHO to every DICOM destination of the profile and to its
worklist server, and a QIDO-RS search (GET <url>/studies?limit=1) to every
STOW-RS destination, one after the other, and prints one line for each: ok or
FAILED, the time in ms and, on failure, the reason (connection refused,
association rejected, credentials rejected, TLS error, timeout, ...).

Options:
  --profile FILE       Hardware profile (default ${DEFAULT_PROFILE}).
  --help               Print this help.

${EXIT_CODES_HELP} Exit 1 when any peer failed.`;

interface Peer {
  label: string;
  destination: DestinationConfig;
}

export async function runEchoCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('echo', HELP, () =>
    parseArgs({ args: argv, options: { profile: { type: 'string', default: DEFAULT_PROFILE }, help: { type: 'boolean' } }, allowPositionals: true, strict: true }),
  );
  if (typeof parsed === 'number') return parsed;
  if (parsed.positionals.length > 0) return usage('echo', `unexpected argument "${parsed.positionals[0]}"`, HELP);

  const profile = await loadCommandProfile(parsed.values.profile);
  if (typeof profile === 'number') return profile;

  const peers = echoPeers(profile);
  const webDestinations = profile.destinations.filter((destination): destination is StowRsDestinationConfig => destination.kind === 'stow-rs');
  if (peers.length === 0 && webDestinations.length === 0) {
    process.stderr.write('endocap echo: the profile has no destinations and no worklist server\n');
    return EXIT_FAILURE;
  }
  const log = commandLogger();
  let failures = 0;
  for (const peer of peers) {
    const { destination } = peer;
    const result = await echo({ destination, callingAeTitle: destination.callingAeTitle ?? profile.station.aeTitle, log });
    if (!result.ok) failures += 1;
    process.stdout.write(`${formatEcho(peer, result)}\n`);
  }
  for (const destination of webDestinations) {
    const result = await echoStowRs(destination);
    if (!result.ok) failures += 1;
    process.stdout.write(`${formatStowEcho(destination, result)}\n`);
  }
  return failures > 0 ? EXIT_FAILURE : 0;
}

/** Lists the destinations, then the worklist server as a destination with its connection settings. */
function echoPeers(profile: Profile): Peer[] {
  const peers: Peer[] = dicomDestinations(profile).map((destination) => ({ label: `destination ${destination.name}`, destination }));
  const worklist = profile.worklist;
  if (worklist !== undefined) {
    const { host, port, calledAeTitle, callingAeTitle, connectTimeoutMs, associationTimeoutMs, requestTimeoutMs, tls } = worklist;
    const destination = destinationSchema.parse({ kind: 'dicom', name: 'worklist', host, port, calledAeTitle, callingAeTitle, connectTimeoutMs, associationTimeoutMs, requestTimeoutMs, tls });
    peers.push({ label: 'worklist', destination });
  }
  return peers;
}

/** `destination pacs (PACS@10.0.0.5:104): ok in 12 ms` or `... FAILED in 3 ms: connection refused by ...` */
export function formatEcho(peer: Peer, result: EchoResult): string {
  const { destination } = peer;
  const where = `${peer.label} (${destination.calledAeTitle}@${destination.host}:${destination.port}${destination.tls === undefined ? '' : ', TLS'})`;
  return result.ok ? `${where}: ok in ${result.ms} ms` : `${where}: FAILED in ${result.ms} ms: ${result.reason ?? 'no reason given'}`;
}

/** `destination web (https://pacs.example.org/dicom-web/studies?limit=1): ok in 40 ms` or `... FAILED in 3 ms: <reason>` */
export function formatStowEcho(destination: StowRsDestinationConfig, result: EchoResult): string {
  const where = `destination ${destination.name} (${echoUrl(destination).href})`;
  return result.ok ? `${where}: ok in ${result.ms} ms` : `${where}: FAILED in ${result.ms} ms: ${result.reason ?? 'no reason given'}`;
}
