import { parseArgs } from 'node:util';
import type { ControlRequest, ControlResults } from '../daemon/control-server.js';
import { EndocapError, ErrorCodes, errorMessage } from '../errors.js';
import { EXIT_CONFIG, loadProfile, ProfileError } from '../profile/load-profile.js';
import type { Profile } from '../profile/schema.js';
import { discontinuationReasons } from '../worklist/mpps-dataset.js';
import { describeParseError } from './command-line.js';
import { ControlClient } from './control-client.js';
import { controlSocketPath } from './queue-backend.js';

const DEFAULT_PROFILE = '/etc/endocap/profile.yaml';
const EXIT_FAILURE = 1;
const EXIT_USAGE = 64;
const reasons = Object.keys(discontinuationReasons);

const HELP = `Usage: endocap exam start (--accession NUMBER | --patient-id ID) [--profile FILE]
       endocap exam end [--discontinue [--reason REASON]] [--profile FILE]
       endocap exam status [--json] [--profile FILE]

Selects the procedure of the exam on this box and ends it, through the
running daemon's control socket (<stateDirectory>/control.sock).

  start          Opens the exam of the one worklist procedure or HL7 order
                 with this accession number (or patient ID); the following
                 stills and clips go into its study. An exam open with another procedure
                 is ended first.
  end            Ends the open exam. Its MPPS is COMPLETED when objects were
                 captured, DISCONTINUED when none were or with --discontinue.
  status         Shows the open exam, the worklist cache, MPPS, barcode
                 reader and HL7 listener. No patient data is shown.

Options:
  --accession NUMBER   Accession number of the procedure.
  --patient-id ID      Patient ID, when the patient has one procedure scheduled.
  --discontinue        End as DISCONTINUED even when objects were captured.
  --reason REASON      Discontinuation reason sent in the MPPS: ${reasons.join(', ')}.
  --json               Print the status as JSON.
  --profile FILE       Hardware profile naming the state folder (default ${DEFAULT_PROFILE}).
  --help               Print this help.

Exit codes: 0 success, 1 failure (no matching procedure, no exam open,
daemon not running), 64 usage error, 78 invalid profile.`;

export async function runExamCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        profile: { type: 'string', default: DEFAULT_PROFILE },
        accession: { type: 'string' },
        'patient-id': { type: 'string' },
        discontinue: { type: 'boolean' },
        reason: { type: 'string' },
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

  let request: ControlRequest;
  switch (subcommand) {
    case 'start':
      if ((values.accession === undefined) === (values['patient-id'] === undefined)) return usage('give exactly one of --accession and --patient-id');
      request = values.accession !== undefined ? { command: 'exam-start', accessionNumber: values.accession } : { command: 'exam-start', patientId: values['patient-id'] ?? '' };
      break;
    case 'end': {
      if (values.reason !== undefined && !reasons.includes(values.reason)) return usage(`--reason must be one of ${reasons.join(', ')}, got "${values.reason}"`);
      if (values.reason !== undefined && values.discontinue !== true) return usage('--reason needs --discontinue');
      const reason = values.reason as keyof typeof discontinuationReasons | undefined;
      request = { command: 'exam-end', ...(values.discontinue === true ? { discontinue: true } : {}), ...(reason === undefined ? {} : { reason }) };
      break;
    }
    case 'status':
      request = { command: 'exam-status' };
      break;
    case undefined:
      return usage('missing subcommand');
    default:
      return usage(`unknown subcommand "${subcommand}"`);
  }

  const profile = await loadProfileOrReport(values.profile);
  if (profile === undefined) return EXIT_CONFIG;
  try {
    const result = await requestDaemon(profile, request);
    process.stdout.write(`${describe(request, result, values.json === true)}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`endocap exam ${subcommand}: ${errorMessage(error)}\n`);
    return EXIT_FAILURE;
  }
}

/** Loads the profile; prints its problems and returns undefined when it is invalid. */
export async function loadProfileOrReport(file: string): Promise<Profile | undefined> {
  try {
    return await loadProfile(file);
  } catch (error) {
    if (error instanceof ProfileError) {
      process.stderr.write(`${error.message}\n`);
      return undefined;
    }
    throw error;
  }
}

/** Sends one request to the running daemon; throws when none is running. */
export async function requestDaemon<C extends ControlRequest>(profile: Profile, request: C): Promise<ControlResults[C['command']]> {
  const socketPath = controlSocketPath(profile);
  const client = await ControlClient.connect(socketPath);
  if (!client) throw new EndocapError(ErrorCodes.CONTROL_REQUEST_FAILED, `the daemon is not running: nothing listens on ${socketPath}`);
  try {
    return await client.request(request);
  } finally {
    client.close();
  }
}

function describe(request: ControlRequest, result: unknown, json: boolean): string {
  if (json || request.command === 'exam-status') {
    if (json) return JSON.stringify(result, null, 2);
    return describeStatus(result as ControlResults['exam-status']);
  }
  if (request.command === 'exam-start') {
    const started = result as ControlResults['exam-start'];
    if (started.alreadyOpen) return `exam ${started.examId} is already open with this procedure`;
    return `${started.endedExamId === undefined ? '' : `exam ${started.endedExamId} ended; `}exam ${started.examId} started`;
  }
  const ended = result as ControlResults['exam-end'];
  return `exam ${ended.examId} ended: ${ended.outcome}, ${ended.objects} object${ended.objects === 1 ? '' : 's'}`;
}

function describeStatus(status: ControlResults['exam-status']): string {
  const lines: string[] = [];
  const { exam } = status;
  lines.push(exam.active ? `exam: ${exam.examId} open since ${exam.openedAt}, selected by ${exam.source}; ${exam.stills} still${exam.stills === 1 ? '' : 's'}, ${exam.clips} clip${exam.clips === 1 ? '' : 's'}` : 'exam: none open');
  if (status.worklist) {
    const worklist = status.worklist;
    const age = worklist.cacheAgeMs === undefined ? 'no successful query yet' : `last successful query ${Math.round(worklist.cacheAgeMs / 60_000)} min ago`;
    lines.push(`worklist: ${worklist.entries} entries, ${age}${worklist.lastError === undefined ? '' : `; last error: ${worklist.lastError}`}`);
  }
  if (status.mpps) lines.push(`mpps: ${status.mpps.queued} waiting, ${status.mpps.setAside} set aside${status.mpps.lastError === undefined ? '' : `; last error: ${status.mpps.lastError}`}`);
  if (status.hl7) {
    const hl7 = status.hl7;
    lines.push(`hl7: ${hl7.listening ? `listening on port ${hl7.port}` : 'not listening'}, ${hl7.openOrders} open order${hl7.openOrders === 1 ? '' : 's'}, ${hl7.messagesAccepted} message${hl7.messagesAccepted === 1 ? '' : 's'} accepted, ${hl7.messagesRejected} rejected`);
  }
  if (status.barcode) lines.push(`barcode reader: ${status.barcode.connected ? 'connected' : 'not connected'}, ${status.barcode.codes} codes, ${status.barcode.rejected} ignored as noise`);
  return lines.join('\n');
}

function usage(problem: string): number {
  process.stderr.write(`endocap exam: ${problem}\n\n${HELP}\n`);
  return EXIT_USAGE;
}
