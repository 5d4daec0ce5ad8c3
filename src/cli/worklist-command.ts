import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { errorMessage } from '../errors.js';
import { createLogger } from '../log.js';
import { EXIT_CONFIG } from '../profile/load-profile.js';
import { OrderStore } from '../hl7/order-store.js';
import { WorklistCache, worklistServerKey } from '../worklist/worklist-cache.js';
import type { WorklistEntry } from '../worklist/worklist-entry.js';
import { describeParseError } from './command-line.js';
import { ControlClient } from './control-client.js';
import { loadProfileOrReport, requestDaemon } from './exam-command.js';
import { controlSocketPath } from './queue-backend.js';

const DEFAULT_PROFILE = '/etc/endocap/profile.yaml';
const EXIT_FAILURE = 1;
const EXIT_USAGE = 64;

const HELP = `Usage: endocap worklist refresh [--profile FILE]
       endocap worklist list [--names] [--json] [--profile FILE]

  refresh        Queries the worklist server now, through the running daemon,
                 and prints how many procedures it returned.
  list           Prints the procedures of the last successful query, then the
                 open HL7 orders (marked "(HL7 order)"), one per line:
                 accession number, scheduled start, modality, station, step
                 description. Read from the running daemon, or from the
                 worklist cache and order file in the state folder when it is
                 stopped.

Options:
  --names          Also print patient name and ID. They are patient data: do
                   not paste the output into tickets or chats.
  --json           Print the entries as JSON, patient data included.
  --profile FILE   Hardware profile naming the state folder (default ${DEFAULT_PROFILE}).
  --help           Print this help.

Exit codes: 0 success, 1 failure, 64 usage error, 78 invalid profile.`;

export async function runWorklistCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        profile: { type: 'string', default: DEFAULT_PROFILE },
        names: { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    return usage(describeParseError(error));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const [subcommand, ...extra] = positionals;
  if (extra.length > 0) return usage(`unexpected argument "${extra[0]}"`);
  if (subcommand !== 'refresh' && subcommand !== 'list') return usage(subcommand === undefined ? 'missing subcommand' : `unknown subcommand "${subcommand}"`);
  if (subcommand === 'refresh' && (values.names === true || values.json === true)) return usage('--names and --json are options of "worklist list"');

  const profile = await loadProfileOrReport(values.profile);
  if (profile === undefined) return EXIT_CONFIG;
  if (!profile.worklist && (subcommand === 'refresh' || !profile.hl7)) {
    process.stderr.write(`endocap worklist ${subcommand}: the profile has no worklist section${subcommand === 'list' ? ' and no hl7 section' : ''}\n`);
    return EXIT_FAILURE;
  }
  try {
    if (subcommand === 'refresh') {
      const result = await requestDaemon(profile, { command: 'worklist-refresh' });
      const notes = [result.truncated ? 'cut at maxEntries' : '', result.malformed > 0 ? `${result.malformed} malformed responses skipped` : '', ...result.warnings].filter(Boolean);
      process.stdout.write(`${result.entries} procedures in ${result.durationMs} ms${notes.length > 0 ? ` (${notes.join(', ')})` : ''}\n`);
      return 0;
    }
    const { entries, fetchedAt, orders } = await readEntries(profile);
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ fetchedAt, entries, orders }, null, 2)}\n`);
      return 0;
    }
    for (const entry of entries) process.stdout.write(`${formatEntry(entry, values.names === true)}\n`);
    for (const entry of orders ?? []) process.stdout.write(`${formatEntry(entry, values.names === true)}  (HL7 order)\n`);
    const summary = [];
    if (profile.worklist) summary.push(`${plural(entries.length, 'procedure')}${fetchedAt === undefined ? '' : ` from the query of ${fetchedAt}`}`);
    if (orders !== undefined) summary.push(`${plural(orders.length, 'open HL7 order')}`);
    process.stderr.write(`${summary.join('; ')}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`endocap worklist ${subcommand}: ${errorMessage(error)}\n`);
    return EXIT_FAILURE;
  }
}

async function readEntries(profile: Parameters<typeof requestDaemon>[0]): Promise<{ entries: WorklistEntry[]; fetchedAt?: string; orders?: WorklistEntry[] }> {
  const client = await ControlClient.connect(controlSocketPath(profile));
  if (client) {
    client.close();
    return requestDaemon(profile, { command: 'worklist-list' });
  }
  // The daemon is stopped: the worklist cache and the order file it left.
  const orders = profile.hl7 ? { orders: await OrderStore.readEntries(profile.stateDirectory) } : {};
  const worklist = profile.worklist;
  if (!worklist) return { entries: [], ...orders };
  const log = createLogger('warn', pino.destination({ fd: 2, sync: true }));
  const cached = await new WorklistCache({ stateDirectory: profile.stateDirectory, log }).load(worklistServerKey(worklist));
  if (!cached) {
    if (profile.hl7) return { entries: [], ...orders };
    throw new Error('the daemon is not running and there is no worklist cache');
  }
  return { entries: cached.entries, fetchedAt: cached.fetchedAt, ...orders };
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** `<accession>  <YYYYMMDD HHMM>  <modality>  <station AE>  <step description>[  <patient name>  <patient ID>]` */
function formatEntry(entry: WorklistEntry, names: boolean): string {
  const columns = [entry.accessionNumber || '-', `${entry.step.startDate || '-'} ${entry.step.startTime.slice(0, 4) || '-'}`, entry.step.modality || '-', entry.step.stationAeTitle || '-', entry.step.description || '-'];
  if (names) columns.push(entry.patientName || '-', entry.patientId || '-');
  return columns.join('  ');
}

function usage(problem: string): number {
  process.stderr.write(`endocap worklist: ${problem}\n\n${HELP}\n`);
  return EXIT_USAGE;
}
