import { parseArgs } from 'node:util';
import type { DaemonStatus } from '../daemon/control-server.js';
import { errorMessage } from '../errors.js';
import { formatBytes } from '../spool/space-guard.js';
import { DEFAULT_PROFILE, EXIT_CODES_HELP, EXIT_FAILURE, loadCommandProfile, parseCommand, usage } from './command-line.js';
import { ControlClient } from './control-client.js';
import { controlSocketPath } from './queue-backend.js';

const STATUS_TIMEOUT_MS = 10_000;

const HELP = `Usage: endocap status [--json] [--profile FILE]

Asks the running daemon for its status over its control socket
(<stateDirectory>/control.sock) and prints a summary: video signal,
footswitch, spool, each destination's sender and the last error.

Options:
  --json               Print the daemon's status document as JSON.
  --profile FILE       Hardware profile naming the state folder
                       (default ${DEFAULT_PROFILE}).
  --help               Print this help.

${EXIT_CODES_HELP} Exit 1 when no daemon runs for the profile.`;

export async function runStatusCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('status', HELP, () =>
    parseArgs({
      args: argv,
      options: { profile: { type: 'string', default: DEFAULT_PROFILE }, json: { type: 'boolean' }, help: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (typeof parsed === 'number') return parsed;
  if (parsed.positionals.length > 0) return usage('status', `unexpected argument "${parsed.positionals[0]}"`, HELP);
  const profile = await loadCommandProfile(parsed.values.profile);
  if (typeof profile === 'number') return profile;

  const socketPath = controlSocketPath(profile);
  let status: DaemonStatus;
  try {
    const client = await ControlClient.connect(socketPath, STATUS_TIMEOUT_MS);
    if (client === undefined) {
      process.stderr.write(`endocap status: no daemon is running (nothing listens on ${socketPath})\n`);
      return EXIT_FAILURE;
    }
    try {
      status = await client.request({ command: 'status' });
    } finally {
      client.close();
    }
  } catch (error) {
    process.stderr.write(`endocap status: ${errorMessage(error)}\n`);
    return EXIT_FAILURE;
  }
  process.stdout.write(parsed.values.json === true ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  return 0;
}

/** Formats the status as a few lines an operator reads at a glance. */
export function formatStatus(status: DaemonStatus): string {
  const lines = [`endocap ${status.version}, box ${status.boxId}, pid ${status.pid}, running since ${status.startedAt}`];
  const { video, footswitch, spool } = status;
  const size = video.width !== undefined && video.height !== undefined ? ` ${video.width}x${video.height}` : '';
  lines.push(`video:      ${video.signal ? `signal${size} at ${video.fps} fps` : 'NO SIGNAL'}`);
  const pedal = footswitch.kind === 'none' ? 'none configured' : `${footswitch.kind}, ${footswitch.connected ? 'connected' : 'NOT CONNECTED'}`;
  lines.push(`footswitch: ${pedal}${footswitch.lastError === undefined ? '' : ` (${footswitch.lastError})`}`);
  lines.push(`spool:      ${spool.objects} objects, ${formatBytes(spool.bytes)}, ${spool.retained} retained`);
  for (const alarm of spool.alarms) lines.push(`  alarm ${alarm.id} (${alarm.severity}): ${alarm.reason}`);
  for (const sender of status.senders) {
    const queue = spool.destinations[sender.destination];
    const counts = queue === undefined ? '' : `${queue.queued} queued, ${queue.setAside} set aside, ${queue.awaitingCommitment} awaiting commitment; `;
    const failures = sender.consecutiveFailures > 0 ? `, ${sender.consecutiveFailures} failures in a row` : '';
    const retry = sender.nextAttemptAt === undefined ? '' : `, next attempt ${sender.nextAttemptAt}`;
    // lastError outlives later successes, so it is labelled rather than shown as the reason of lastResult.
    const error = sender.lastError === undefined ? '' : `; last error: ${sender.lastError}`;
    lines.push(`destination ${sender.destination}: ${counts}last result ${sender.lastResult}${failures}${retry}${error}`);
  }
  if (status.lastError !== undefined) lines.push(`last error: ${status.lastError}`);
  return `${lines.join('\n')}\n`;
}
