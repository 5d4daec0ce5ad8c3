import { parseArgs } from 'node:util';
import { SerialFootswitch } from '../footswitch/serial-footswitch.js';
import { commandLogger, DEFAULT_PROFILE, EXIT_CODES_HELP, EXIT_FAILURE, loadCommandProfile, parseCommand, parseSeconds, usage } from './command-line.js';

const DEFAULT_SECONDS = 30;

const HELP = `Usage: endocap footswitch test [--seconds N] [--profile FILE]

Opens the profile's serial footswitch and prints, as they happen, the port
connecting and disconnecting, each pedal change (down, up) and each gesture
recognised (short, long, double) with the action the profile maps it to.
Ends after N seconds or on Ctrl-C. Stop the daemon first: it holds the port.

Options:
  --seconds N          How long to listen (default ${DEFAULT_SECONDS}).
  --profile FILE       Hardware profile (default ${DEFAULT_PROFILE}).
  --help               Print this help.

${EXIT_CODES_HELP} Exit 1 when the profile has no serial footswitch.`;

export async function runFootswitchCommand(argv: string[]): Promise<number> {
  const parsed = parseCommand('footswitch', HELP, () =>
    parseArgs({
      args: argv,
      options: { profile: { type: 'string', default: DEFAULT_PROFILE }, seconds: { type: 'string' }, help: { type: 'boolean' } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (typeof parsed === 'number') return parsed;
  const [subcommand, ...extra] = parsed.positionals;
  if (subcommand !== 'test') return usage('footswitch', subcommand === undefined ? 'missing subcommand' : `unknown subcommand "${subcommand}"`, HELP);
  if (extra.length > 0) return usage('footswitch', `unexpected argument "${extra[0]}"`, HELP);
  const seconds = parseSeconds(parsed.values.seconds, DEFAULT_SECONDS);
  if (seconds === undefined) return usage('footswitch', `--seconds must be a positive number, got "${parsed.values.seconds}"`, HELP);

  const profile = await loadCommandProfile(parsed.values.profile);
  if (typeof profile === 'number') return profile;
  const config = profile.footswitch;
  if (config.kind !== 'serial') {
    process.stderr.write(`endocap footswitch test: the profile's footswitch is "${config.kind}", not a serial one; nothing to test\n`);
    return EXIT_FAILURE;
  }

  const footswitch = new SerialFootswitch({ config, log: commandLogger() });
  const print = (text: string): void => {
    process.stdout.write(`${new Date().toISOString().slice(11, 23)}  ${text}\n`);
  };
  footswitch.on('connected', ({ path }) => print(`connected to ${path}`));
  footswitch.on('disconnected', ({ path, reason }) => print(`disconnected from ${path}: ${reason}`));
  footswitch.on('pedalChanged', ({ down }) => print(down ? 'pedal down' : 'pedal up'));
  footswitch.on('gesture', ({ gesture, action }) => print(`gesture ${gesture} -> ${action}`));

  process.stdout.write(`listening on ${config.path} for ${seconds} s; press the pedal (Ctrl-C ends)\n`);
  await footswitch.start();
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    const timer = setTimeout(done, seconds * 1000);
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
  await footswitch.stop();
  return 0;
}
