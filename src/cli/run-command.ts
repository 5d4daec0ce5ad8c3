import { parseArgs } from 'node:util';
import { createLogger } from '../log.js';
import { EXIT_CONFIG, loadProfileWithNotes, ProfileError, type LoadedProfile } from '../profile/load-profile.js';

const HELP = `Usage: endocap run --profile FILE

Runs the capture daemon until SIGTERM or SIGINT.

Options:
  --profile FILE   Hardware profile (YAML or JSON). Required.

Logs are JSON lines on stdout. Exit codes: 0 stopped by signal, 1 fatal
runtime error, 64 usage error, 78 invalid profile (systemd does not restart).`;

export async function runDaemonCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { profile: { type: 'string' }, help: { type: 'boolean' } }, strict: true });
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (!values.profile) {
    process.stderr.write(`endocap run: missing --profile FILE\n\n${HELP}\n`);
    return 64;
  }

  let loaded: LoadedProfile;
  try {
    loaded = await loadProfileWithNotes(values.profile);
  } catch (error) {
    if (error instanceof ProfileError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT_CONFIG;
    }
    throw error;
  }

  // Loaded only now, so that a bad profile is reported without loading FFmpeg and serial bindings.
  const { Daemon } = await import('../daemon/daemon.js');
  const profile = loaded.profile;
  const log = createLogger(profile.logLevel);
  installCrashHandlers(log);
  // Once per process: a reloaded profile is not reported again.
  for (const note of loaded.notes) {
    log.warn({ profileFile: note.file, path: note.path, fromVersion: note.fromVersion, toVersion: note.toVersion, change: note.change }, 'profile migrated from an older format version');
  }
  const signal = waitForSignal(log);
  // reload-profile hands over a new, valid profile: the daemon is stopped and started again with it.
  // NOTE: the log level stays the one of the first profile until the process restarts.
  for (let next: typeof profile | undefined = profile; next !== undefined; ) {
    // A keyboard pedal (the simulator profile) reads the controlling terminal; under systemd there is none.
    const daemon = new Daemon({ profile: next, profileFile: values.profile, log, interactive: Boolean(process.stdin.isTTY) });
    const reloaded = new Promise<typeof profile>((resolve) => daemon.once('reloadRequested', (event) => resolve(event.profile)));
    await daemon.start();
    next = await Promise.race([signal.then(() => undefined), reloaded]);
    await daemon.stop();
    if (next !== undefined) log.info('restarting with the reloaded profile');
  }
  log.flush();
  return 0;
}

/** Resolves on the first SIGTERM or SIGINT. */
export function waitForSignal(log: ReturnType<typeof createLogger>): Promise<void> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'signal received');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/**
 * Installs handlers that log an uncaught error and exit, because a programming
 * error leaves the daemon in an unknown state. systemd then restarts a clean
 * process, and the spool keeps every captured object across the restart.
 */
export function installCrashHandlers(log: ReturnType<typeof createLogger>): void {
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error }, 'uncaught exception, exiting');
    log.flush();
    process.exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: reason }, 'unhandled promise rejection, exiting');
    log.flush();
    process.exit(1);
  });
}
