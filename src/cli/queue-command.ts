import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { readObjectMetadata } from '../dicom/object-metadata.js';
import { isValidUid } from '../dicom/uid.js';
import { errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import { EXIT_CONFIG, loadProfile, ProfileError } from '../profile/load-profile.js';
import type { Profile } from '../profile/schema.js';
import { deliveryStates, type QueueItem } from '../spool/queue-operations.js';
import { formatBytes } from '../spool/space-guard.js';
import type { DeliveryState } from '../spool/types.js';
import { describeParseError } from './command-line.js';
import { openQueueBackend, type QueueBackend } from './queue-backend.js';

const DEFAULT_PROFILE = '/etc/endocap/profile.yaml';
const EXIT_FAILURE = 1;
const EXIT_USAGE = 64;

const COMMON = `  --profile FILE       Hardware profile naming the spool and state folders
                       (default ${DEFAULT_PROFILE}).
  --help               Print this help.

While the daemon runs, the command goes through its control socket
(<stateDirectory>/control.sock). Otherwise it opens the spool itself, under
the lock the daemon also takes; run it as the daemon's user.

Exit codes: 0 success, 1 runtime failure or at least one object or file
failed, 64 usage error, 78 invalid profile.`;

const HELP: Record<string, string> = {
  queue: `Usage: endocap queue list|retry|export|import [options]

Shows and manages the objects in the spool.

  list [--state STATE] [--json]            One line per object and its deliveries.
  retry (ID... | --all-set-aside) [--destination NAME]
                                           Queues deliveries again.
  export ID... --to DIR                    Copies objects out of the spool.
  import FILE...                           Adds DICOM Part 10 files to the spool.

Run 'endocap queue <subcommand> --help' for details.

Options:
${COMMON}`,
  list: `Usage: endocap queue list [--state STATE] [--json] [--profile FILE]

Prints one line per object, oldest first: id, time queued, size, SOP class,
then for each destination its state, attempts, last DIMSE status and the last
failure reason. Patient data is never shown.

Options:
  --state STATE        Only objects with a delivery in STATE: ${deliveryStates.join(', ')}.
  --json               Print a JSON array of objects instead of lines.
${COMMON}`,
  retry: `Usage: endocap queue retry ID... [--destination NAME] [--profile FILE]
       endocap queue retry --all-set-aside [--destination NAME] [--profile FILE]

Queues deliveries again. For each ID, its set-aside deliveries are queued; an
object already delivered everywhere (kept for retention) is sent again to every
destination. With --destination, only the delivery to NAME is queued, when it
is set aside, stored or committed.

Options:
  --all-set-aside      Every set-aside delivery in the spool.
  --destination NAME   Only the delivery to destination NAME.
${COMMON}`,
  export: `Usage: endocap queue export ID... --to DIR [--profile FILE]

Copies each object to DIR as <SOP Instance UID>.dcm, with its spool state as
<SOP Instance UID>.json. The objects stay in the spool.

Options:
  --to DIR             Folder for the files; created when missing.
${COMMON}`,
  import: `Usage: endocap queue import FILE... [--profile FILE]

Adds each DICOM Part 10 file to the spool, queued for every destination. A
file that is not Part 10 is reported and skipped; the other files are still
imported. A file whose SOP Instance UID is already in the spool is not added again.

Options:
${COMMON}`,
};

const subcommandOptions: Record<string, string[]> = {
  list: ['state', 'json'],
  retry: ['all-set-aside', 'destination'],
  export: ['to'],
  import: [],
};

export async function runQueueCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        profile: { type: 'string', default: DEFAULT_PROFILE },
        state: { type: 'string' },
        json: { type: 'boolean' },
        'all-set-aside': { type: 'boolean' },
        destination: { type: 'string' },
        to: { type: 'string' },
        help: { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    const named = argv.find((arg) => !arg.startsWith('-'));
    return usage(describeParseError(error), named !== undefined && named in subcommandOptions ? named : 'queue');
  }
  const { values } = parsed;
  const [subcommand, ...operands] = parsed.positionals;
  if (subcommand === undefined || !(subcommand in subcommandOptions)) {
    if (values.help) return help('queue');
    return usage(subcommand === undefined ? 'missing subcommand' : `unknown subcommand "${subcommand}"`, 'queue');
  }
  if (values.help) return help(subcommand);

  const allowed = new Set([...(subcommandOptions[subcommand] ?? []), 'profile', 'help']);
  const misplaced = Object.keys(values).filter((name) => !allowed.has(name) && values[name as keyof typeof values] !== undefined);
  if (misplaced.length > 0) return usage(`--${misplaced[0]} is not an option of "queue ${subcommand}"`, subcommand);

  const problem = checkOperands(subcommand, operands, values);
  if (problem !== undefined) return usage(problem, subcommand);

  let profile: Profile;
  try {
    profile = await loadProfile(values.profile);
  } catch (error) {
    if (error instanceof ProfileError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT_CONFIG;
    }
    throw error;
  }

  // Only warnings reach the operator's terminal, on stderr; stdout carries the command's output.
  const log = createLogger('warn', pino.destination({ fd: 2, sync: true }));
  let backend: QueueBackend;
  try {
    backend = await openQueueBackend(profile, log);
  } catch (error) {
    return fail(subcommand, errorMessage(error));
  }
  try {
    switch (subcommand) {
      case 'list':
        return await list(backend, values.state as DeliveryState | undefined, values.json === true);
      case 'retry':
        return await retry(backend, operands, values['all-set-aside'] === true, values.destination);
      case 'export':
        return await exportObjects(backend, operands, path.resolve(values.to ?? '.'));
      default:
        return await importFiles(backend, operands);
    }
  } catch (error) {
    return fail(subcommand, errorMessage(error));
  } finally {
    await backend.close();
  }
}

function checkOperands(subcommand: string, operands: string[], values: { state?: string; 'all-set-aside'?: boolean; to?: string }): string | undefined {
  switch (subcommand) {
    case 'list':
      if (operands.length > 0) return `unexpected argument "${operands[0]}"`;
      if (values.state !== undefined && !(deliveryStates as readonly string[]).includes(values.state)) {
        return `--state must be one of ${deliveryStates.join(', ')}, got "${values.state}"`;
      }
      return undefined;
    case 'retry':
      if (values['all-set-aside'] === true && operands.length > 0) return 'give object ids or --all-set-aside, not both';
      if (values['all-set-aside'] !== true && operands.length === 0) return 'missing object ids or --all-set-aside';
      return undefined;
    case 'export':
      if (operands.length === 0) return 'missing object ids';
      if (values.to === undefined) return 'missing --to DIR';
      return undefined;
    default:
      return operands.length === 0 ? 'missing files to import' : undefined;
  }
}

async function list(backend: QueueBackend, state: DeliveryState | undefined, json: boolean): Promise<number> {
  const items = await backend.list(state);
  if (json) {
    process.stdout.write(`${JSON.stringify(items, null, 2)}\n`);
    return 0;
  }
  for (const item of items) process.stdout.write(`${formatItem(item)}\n`);
  if (items.length === 0) process.stderr.write(`endocap queue list: no objects${state === undefined ? '' : ` with a delivery ${state}`}\n`);
  return 0;
}

/** `<id>  <queuedAt>  <size>  <SOP class>  <destination>: <state>, <n> attempts[, status 0x....][, "<reason>"]; ...` */
export function formatItem(item: QueueItem): string {
  const deliveries = Object.entries(item.deliveries).map(([name, record]) => {
    const parts = [`${name}: ${record.state}`, `${record.attempts} attempt${record.attempts === 1 ? '' : 's'}`];
    if (record.lastStatus !== undefined) parts.push(`status 0x${record.lastStatus.toString(16).toUpperCase().padStart(4, '0')}`);
    if (record.lastError !== undefined) parts.push(JSON.stringify(record.lastError));
    return parts.join(', ');
  });
  return [item.id, item.queuedAt, formatBytes(item.bytes).padStart(10), item.sopClassName, deliveries.join('; ')].join('  ');
}

async function retry(backend: QueueBackend, ids: string[], allSetAside: boolean, destination: string | undefined): Promise<number> {
  const request = allSetAside ? { allSetAside: true } : { ids };
  const result = await backend.retry(destination === undefined ? request : { ...request, destination });
  for (const { id, destination: name, previousState } of result.requeued) {
    process.stdout.write(`${id}: queued again for ${name} (was ${previousState})\n`);
  }
  for (const { id, reason } of result.problems) process.stderr.write(`endocap queue retry: ${id}: ${reason}\n`);
  if (allSetAside && result.requeued.length === 0) process.stderr.write('endocap queue retry: no set-aside deliveries\n');
  return result.problems.length > 0 ? EXIT_FAILURE : 0;
}

async function exportObjects(backend: QueueBackend, ids: string[], directory: string): Promise<number> {
  await mkdir(directory, { recursive: true });
  let failures = 0;
  for (const id of ids) {
    try {
      const { entry, part10 } = await backend.export(id);
      // The UID names the file only when it is a valid UID, so a tampered state file cannot point outside DIR.
      const name = isValidUid(entry.sopInstanceUid) ? entry.sopInstanceUid : entry.id;
      const file = path.join(directory, `${name}.dcm`);
      await writeFile(file, part10);
      await writeFile(path.join(directory, `${name}.json`), `${JSON.stringify(entry, null, 2)}\n`);
      process.stdout.write(`${id}: exported to ${file}\n`);
    } catch (error) {
      failures += 1;
      process.stderr.write(`endocap queue export: ${id}: ${errorMessage(error)}\n`);
    }
  }
  return failures > 0 ? EXIT_FAILURE : 0;
}

async function importFiles(backend: QueueBackend, files: string[]): Promise<number> {
  let failures = 0;
  for (const file of files) {
    try {
      const part10 = await readFile(file);
      // Checked here too, so the message names the file before anything is sent to the daemon.
      readObjectMetadata(part10);
      const result = await backend.import(part10);
      if (result.outcome === 'imported') process.stdout.write(`${file}: imported as ${result.id}\n`);
      else process.stdout.write(`${file}: already in the spool as ${result.id}, not added again\n`);
    } catch (error) {
      failures += 1;
      process.stderr.write(`endocap queue import: ${file}: not imported: ${errorMessage(error)}\n`);
    }
  }
  return failures > 0 ? EXIT_FAILURE : 0;
}

function help(subcommand: string): number {
  process.stdout.write(`${HELP[subcommand] ?? HELP.queue}\n`);
  return 0;
}

function usage(problem: string, subcommand: string): number {
  process.stderr.write(`endocap queue: ${problem}\n\n${HELP[subcommand] ?? HELP.queue}\n`);
  return EXIT_USAGE;
}

function fail(subcommand: string, message: string): number {
  process.stderr.write(`endocap queue ${subcommand}: ${message}\n`);
  return EXIT_FAILURE;
}
