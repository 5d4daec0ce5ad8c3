import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { errorMessage } from '../errors.js';
import { sleep } from '../backoff.js';
import { VideoSource } from '../video/video-source.js';
import { commandLogger, DEFAULT_PROFILE, EXIT_CODES_HELP, EXIT_FAILURE, loadCommandProfile, parseCommand, parseSeconds, usage } from './command-line.js';

const DEFAULT_SECONDS = 5;

const HELP = `Usage: endocap video test [--seconds N] [--snapshot FILE] [--profile FILE]

Opens the profile's video source for N seconds, as the daemon would, and
prints the format, the measured frame rate and the frames dropped. Stop the
daemon first: a capture card opens for one process at a time.

Options:
  --seconds N          How long to watch the signal (default ${DEFAULT_SECONDS}).
  --snapshot FILE      Also write the last frame as a JPEG to FILE.
  --profile FILE       Hardware profile (default ${DEFAULT_PROFILE}).
  --help               Print this help.

${EXIT_CODES_HELP} Exit 1 when there was no signal.`;

export async function runVideoCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('video', HELP, () =>
    parseArgs({
      args: argv,
      options: { profile: { type: 'string', default: DEFAULT_PROFILE }, seconds: { type: 'string' }, snapshot: { type: 'string' }, help: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (typeof parsed === 'number') return parsed;
  const [subcommand, ...extra] = parsed.positionals;
  if (subcommand !== 'test') return usage('video', subcommand === undefined ? 'missing subcommand' : `unknown subcommand "${subcommand}"`, HELP);
  if (extra.length > 0) return usage('video', `unexpected argument "${extra[0]}"`, HELP);
  const seconds = parseSeconds(parsed.values.seconds, DEFAULT_SECONDS);
  if (seconds === undefined) return usage('video', `--seconds must be a positive number, got "${parsed.values.seconds}"`, HELP);

  const profile = await loadCommandProfile(parsed.values.profile);
  if (typeof profile === 'number') return profile;

  const log = commandLogger();
  const source = new VideoSource({ config: profile.video, log, image: profile.image });
  const openFailures: string[] = [];
  source.on('openFailed', (failed) => openFailures.push(failed.reason));
  await source.start();
  try {
    await sleep(seconds * 1000);
    const status = source.status();
    if (!status.signal) {
      const reason = openFailures.at(-1);
      process.stdout.write(`video: NO SIGNAL after ${seconds} s${reason === undefined ? '' : ` (${reason})`}\n`);
      return EXIT_FAILURE;
    }
    process.stdout.write(`video: ${status.width}x${status.height} ${status.pixelFormat ?? ''}, ${status.fps} fps measured, ${status.framesDecoded} frames decoded, ${status.framesDropped} dropped\n`);
    const snapshot = parsed.values.snapshot;
    if (snapshot !== undefined) {
      try {
        const still = await source.captureStill(Date.now(), { jpegQuality: profile.still.jpegQuality });
        await writeFile(snapshot, still.jpeg);
        process.stdout.write(`snapshot: ${still.width}x${still.height} JPEG written to ${snapshot}\n`);
      } catch (error) {
        process.stderr.write(`endocap video test: snapshot failed: ${errorMessage(error)}\n`);
        return EXIT_FAILURE;
      }
    }
    return 0;
  } finally {
    await source.stop();
  }
}
